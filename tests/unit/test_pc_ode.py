"""PC samplers, the probability-flow ODE and PC inpainting with exact Gaussian-mixture scores.

With the exact score ∇log p_t every sampler must reproduce the mixture (weights, means,
covariances within sampling error plus a small discretisation allowance). N is kept at 100
steps so that each run takes about a second on one CPU core.

The low-dimensional mixtures here run the Langevin corrector with the reference code's batch-mean
norms (``step_norm="batch"``): with D = 2 the per-sample ‖z‖/‖s‖ of the default is a noisy function of
the state, which biases that corrector; in image dimensions it concentrates (tested at D = 64).
"""

import math

import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.samplers.inpaint import colorize, decorrelating_basis, inpaint
from diffzoo.samplers.ode import probability_flow_ode
from diffzoo.samplers.pc import CORRECTORS, PREDICTORS, pc
from diffzoo.schedules.sde import SubVPSDE, VESDE, VPSDE

MIXTURE = GaussianMixture(
    weights=[0.3, 0.7],
    means=[[-1.0, 0.5], [1.5, -0.5]],
    covs=[[[0.09, 0.03], [0.03, 0.06]], [[0.16, -0.04], [-0.04, 0.09]]],
)
EPS = 1e-3
N_SAMPLES = 3000


def exact_score(sde, gm=MIXTURE):
    def score_fn(x, t):
        return gm.score(x.reshape(x.shape[0], -1), sde.alpha(t), sde.sigma(t)).to(x.dtype).reshape(x.shape)

    return score_fn


def assert_reproduces_mixture(x, sde, *, allowance=0.0):
    """Compare samples with the exact p_eps: component weights (samples assigned to their most
    likely component), mean and covariance, each within 4 standard errors plus a discretisation
    allowance (0.01 on weights, 0.02 on moments, more for corrector-only sampling)."""
    assert torch.isfinite(x).all()
    x = x.double()
    n = x.shape[0]
    t = torch.tensor([EPS], dtype=torch.float64)
    alpha, sigma = sde.alpha(t).item(), sde.sigma(t).item()
    log_post = torch.stack([MIXTURE.class_log_prob(x, k, alpha, sigma) for k in range(2)], -1)
    weights = torch.bincount(log_post.argmax(-1), minlength=2).double() / n
    w = MIXTURE.weights
    assert torch.all((weights - w).abs() <= 4 * torch.sqrt(w * (1 - w) / n) + 0.01 + allowance / 2), weights
    cov = alpha**2 * MIXTURE.covariance() + sigma**2 * torch.eye(2, dtype=torch.float64)
    mean_err = (x.mean(0) - alpha * MIXTURE.mean()).abs()
    assert torch.all(mean_err <= 4 * torch.sqrt(cov.diagonal() / n) + 0.02 + allowance), x.mean(0)
    # standard error of a sample covariance entry, Gaussian approximation: √((Σ_ii Σ_jj + Σ_ij²)/n)
    cov_se = torch.sqrt((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n)
    cov_err = (torch.cov(x.T) - cov).abs()
    assert torch.all(cov_err <= 4 * cov_se + 0.02 + allowance), torch.cov(x.T)


def _prior(sde, seed=0, n=N_SAMPLES):
    gen = torch.Generator().manual_seed(seed)
    return sde.prior_sampling((n, 2), gen), gen


PAIRS = [(p, c) for p in PREDICTORS for c in CORRECTORS if not (p == "none" and c == "none")]


@pytest.mark.parametrize("predictor,corrector", PAIRS)
def test_every_pc_pair_reproduces_the_mixture_vp(predictor, corrector):
    sde = VPSDE(N=100)
    x_T, gen = _prior(sde)
    if predictor == "none":
        # Corrector-only sampling needs several, larger Langevin steps per level and still
        # misses the weights slightly at N = 100 (Score SDE Table 1: "C" samplers are worse).
        kwargs, allowance = dict(snr=0.3, n_corrector=5), 0.05
    else:
        kwargs, allowance = dict(snr=0.16, n_corrector=1), 0.0
    nfes = []
    x = pc(exact_score(sde), sde, x_T, predictor, corrector, eps=EPS, generator=gen, step_norm="batch",
           callback=lambda d: nfes.append(d["nfe"]), **kwargs)
    assert x.shape == x_T.shape and x.dtype == x_T.dtype
    assert_reproduces_mixture(x, sde, allowance=allowance)
    per_step = (predictor != "none") + (corrector != "none") * kwargs["n_corrector"]
    assert len(nfes) == sde.N and nfes[-1] == per_step * sde.N


@pytest.mark.parametrize(
    "sde,predictor,corrector",
    [
        (VESDE(N=100), "reverse_diffusion", "langevin"),  # the paper's VE PC sampler
        (VESDE(N=100), "ancestral", "annealed_langevin"),
        (VESDE(N=100), "euler_maruyama", "none"),
        (SubVPSDE(N=100), "euler_maruyama", "langevin"),
        (SubVPSDE(N=100), "reverse_diffusion", "annealed_langevin"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_pc_reproduces_the_mixture_ve_and_subvp(sde, predictor, corrector):
    x_T, gen = _prior(sde, seed=1)
    x = pc(exact_score(sde), sde, x_T, predictor, corrector, eps=EPS, generator=gen, step_norm="batch")
    assert_reproduces_mixture(x, sde)


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE, VESDE])
def test_probability_flow_ode_reproduces_the_mixture(cls):
    sde = cls()
    x_T, _ = _prior(sde, seed=2)
    nfes = []
    x = probability_flow_ode(exact_score(sde), sde, x_T, eps=EPS, callback=lambda d: nfes.append(d["nfe"]))
    assert_reproduces_mixture(x, sde)
    assert nfes == list(range(1, len(nfes) + 1)) and 20 < nfes[-1] < 1000


def test_probability_flow_ode_is_deterministic_and_denoise_adds_one_nfe():
    sde = VPSDE()
    x_T, _ = _prior(sde, n=64)
    a = probability_flow_ode(exact_score(sde), sde, x_T)
    b = probability_flow_ode(exact_score(sde), sde, x_T)
    assert torch.equal(a, b)
    nfes = []
    c = probability_flow_ode(exact_score(sde), sde, x_T, denoise=True, callback=lambda d: nfes.append(d["nfe"]))
    assert nfes[-1] == nfes[-2] + 1
    assert (c - a).abs().max() < 1e-2  # one denoising step at t = eps moves samples by O(σ(eps)²·|s|)


@pytest.mark.parametrize("sde", [VPSDE(N=20), VESDE(N=20)], ids=["VP", "VE"])
def test_default_pc_makes_each_sample_independent_of_its_batch(sde):
    """Review A4: the default corrector norms are per sample, so with one generator per sample,
    sample i depends only on its own generator (evaluation noise per global sample index) — bit for
    bit. The reference code's batch means (``step_norm="batch"``) couple the batch."""
    gens = lambda idx: [torch.Generator().manual_seed(1000 + i) for i in idx]  # noqa: E731
    x_T = torch.stack([sde.prior_sampling((1, 2), g)[0] for g in gens(range(6))])
    full = pc(exact_score(sde), sde, x_T, generator=gens(range(6)))
    part = pc(exact_score(sde), sde, x_T[2:5], generator=gens(range(2, 5)))
    assert torch.equal(full[2:5], part)
    coupled = pc(exact_score(sde), sde, x_T, generator=gens(range(6)), step_norm="batch")
    alone = pc(exact_score(sde), sde, x_T[2:5], generator=gens(range(2, 5)), step_norm="batch")
    assert not torch.allclose(coupled[2:5], alone)


def isotropic_mixture_score(sde, weights, means, std):
    """Exact score of ``Σ_k π_k N(μ_k, std² I)`` under ``sde`` (closed form, fast in any dimension):
    ``x_t ~ Σ_k π_k N(α μ_k, v I)`` with ``v = α² std² + σ²``, so ``∇ log p_t = Σ_k r_k (α μ_k − x)/v``
    with ``r_k ∝ π_k exp(−‖x − α μ_k‖²/2v)``."""
    w, mu = torch.tensor(weights, dtype=torch.float64), torch.tensor(means, dtype=torch.float64)

    def score_fn(x, t):
        a, s = sde.alpha(t)[:, None, None], sde.sigma(t)[:, None, None]
        v = a**2 * std**2 + s**2
        diff = a * mu[None] - x.double()[:, None, :]  # [B, K, D]
        r = torch.softmax(torch.log(w)[None] - (diff**2).sum(-1) / (2 * v[..., 0]), dim=-1)
        return (r[..., None] * diff / v).sum(1).to(x.dtype)

    return score_fn


def test_per_sample_corrector_norms_reproduce_a_64_dimensional_mixture():
    """In image dimensions ‖z‖/‖s‖ concentrates, and the default per-sample corrector of the paper's
    VE sampler (reverse diffusion + Langevin, snr 0.16) reproduces the data: two isotropic modes at
    ±0.5·1 in D = 64 (std 0.2) come out with their weights, their centres and their spread."""
    D, n = 64, 2000
    sde = VESDE(sigma_max=10.0, N=100)
    score = isotropic_mixture_score(sde, [0.3, 0.7], [[-0.5] * D, [0.5] * D], 0.2)
    gen = torch.Generator().manual_seed(5)
    x = pc(score, sde, sde.prior_sampling((n, D), gen, dtype=torch.float64), eps=EPS, generator=gen)
    mode = x.mean(1) > 0
    assert abs(mode.double().mean().item() - 0.7) < 4 * math.sqrt(0.21 / n)
    spread = math.sqrt(0.2**2 + sde.sigma(torch.tensor([EPS])).item() ** 2)
    for k, centre in ((True, 0.5), (False, -0.5)):
        sel = x[mode == k]
        assert (sel.mean(0) - centre).abs().max() < 4 * spread / math.sqrt(sel.shape[0])
        assert abs(sel.std(0).mean().item() / spread - 1) < 0.05


def test_pc_rejects_unknown_names():
    sde = VPSDE(N=10)
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="allowed.*ancestral"):
        pc(exact_score(sde), sde, x, predictor="heun")
    with pytest.raises(ValueError, match="allowed.*langevin"):
        pc(exact_score(sde), sde, x, corrector="hmc")
    with pytest.raises(ValueError, match="both be 'none'"):
        pc(exact_score(sde), sde, x, predictor="none", corrector="none")
    with pytest.raises(ValueError, match="ancestral sampling is defined"):
        pc(exact_score(sde), SubVPSDE(N=10), x, predictor="ancestral")
    with pytest.raises(ValueError, match="allowed.*RK45"):
        probability_flow_ode(exact_score(sde), sde, x, method="euler")


# ---------------------------------------------------------------------- inpainting / colourisation
TWO_MODES = GaussianMixture([0.5, 0.5], [[-1.5] * 4, [1.5] * 4], 0.3)


@pytest.mark.parametrize("cls", [VPSDE, VESDE])
def test_inpainting_keeps_known_values_and_fills_the_conditional(cls):
    """Known coordinates come back bit-exact; the unknown ones follow p(x_u | x_k): with two
    isotropic modes at ±1.5·1 (std 0.3) they sit in the known part's mode with std 0.3. The
    replacement method of Score SDE App. I is approximate: allow ≤ 1% of samples in the wrong mode."""
    sde = cls(N=100)
    gen = torch.Generator().manual_seed(3)
    y = TWO_MODES.sample(2000, gen)
    mask = torch.tensor([True, False, True, False])
    out = inpaint(exact_score(sde, TWO_MODES), sde, sde.prior_sampling(y.shape, gen), y, mask, generator=gen, step_norm="batch")
    assert torch.equal(out[:, mask], y[:, mask])
    resid = out[:, ~mask] - torch.where(y[:, :1] > 0, 1.5, -1.5)
    inlier = resid.abs() < 1.2  # 4σ from the right mode, 6σ from the wrong one
    assert inlier.float().mean() > 0.99
    assert resid[inlier].mean().abs() < 4 * 0.3 / math.sqrt(inlier.sum()) + 0.01
    assert abs(resid[inlier].std().item() / 0.3 - 1) < 0.1


@pytest.mark.parametrize("cls", [VPSDE, VESDE])
def test_colorization_keeps_the_grey_level_and_fills_the_colour(cls):
    """One-pixel RGB images from two modes whose grey levels differ by ~9 std: the output has
    the given channel mean, and its colour follows p(x | gray, mode), i.e. per channel
    N(μ + (gray − mean(μ)), 0.2²·(1 − 1/3))."""
    sde = cls(N=100)
    gm3 = GaussianMixture([0.5, 0.5], [[-1.0, -0.5, 0.0], [1.0, 0.5, 0.0]], 0.2)
    gen = torch.Generator().manual_seed(4)
    x0, comp = gm3.sample(1000, gen, return_labels=True)
    x0 = x0[:, :, None, None]  # [B, 3, 1, 1] images
    gray = x0.mean(1, keepdim=True)
    out = colorize(exact_score(sde, gm3), sde, sde.prior_sampling(x0.shape, gen), gray, generator=gen, step_norm="batch")
    assert out.shape == x0.shape
    torch.testing.assert_close(out.mean(1, keepdim=True), gray, atol=1e-6, rtol=0)
    mu = gm3.means[comp].float()
    resid = out[:, :, 0, 0] - (mu + gray[:, :, 0, 0] - mu.mean(1, keepdim=True))
    inlier = (resid.abs() < 0.8).all(1)
    assert inlier.float().mean() > 0.99
    std = 0.2 * math.sqrt(2 / 3)
    assert torch.all(resid[inlier].mean(0).abs() < 4 * std / math.sqrt(inlier.sum()) + 0.01)
    assert abs(resid[inlier].std().item() / std - 1) < 0.1


def test_decorrelating_basis_is_orthonormal_with_grey_axis():
    for C in (1, 3, 4):
        Q = decorrelating_basis(C)
        torch.testing.assert_close(Q.T @ Q, torch.eye(C, dtype=torch.float64))
        torch.testing.assert_close(Q[:, 0], torch.full((C,), 1 / math.sqrt(C), dtype=torch.float64))


def test_replacement_inpainting_in_ddpm_on_a_cosine_schedule():
    """Discrete-time replacement (GLIDE §4.3's baseline) needs no SDE limit: on the cosine schedule the
    known coordinates come back exactly and the unknown ones land in the known part's mode (std 0.3);
    replacement is approximate, so ≤ 2 % of samples may pick the wrong mode."""
    from diffzoo.denoisers.exact import mixture_denoiser
    from diffzoo.samplers.inpaint import replace_inpaint
    from diffzoo.schedules import DiscreteSchedule, cosine_betas

    schedule = DiscreteSchedule(cosine_betas(1000))
    den = mixture_denoiser(TWO_MODES, schedule, conditional=False)
    gen = torch.Generator().manual_seed(5)
    y = TWO_MODES.sample(2000, gen)
    mask = torch.tensor([True, False, True, False])
    x_T = torch.randn(y.shape, generator=gen)
    out = replace_inpaint(den, x_T, y, mask, steps=100, generator=gen, variance="fixedsmall", clip_x0=False)
    assert torch.equal(out[:, mask], y[:, mask])
    resid = out[:, ~mask] - torch.where(y[:, :1] > 0, 1.5, -1.5)
    inlier = resid.abs() < 1.2
    assert inlier.float().mean() > 0.98
    assert abs(resid[inlier].std().item() / 0.3 - 1) < 0.15
