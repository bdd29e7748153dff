"""Improved DDPM (Nichol & Dhariwal 2021): learned variance, L_hybrid, importance sampling of t,
and the variational bound in bits/dim — against closed forms and exact ε."""

import math

import pytest
import torch
from torch import nn

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.metrics.vlb import vlb_bits_per_dim
from diffzoo.objectives import SimpleLoss
from diffzoo.objectives.hybrid import HybridLoss, VLBLoss
from diffzoo.objectives.resample import LossSecondMomentSampler, UniformSampler
from diffzoo.parameterization import p_mean_variance
from diffzoo.schedules import DiscreteSchedule, cosine_betas, linear_betas, spaced_timesteps

LN2 = math.log(2.0)


# ---------------------------------------------------------------- learned variance (iDDPM eq. 15)
@pytest.mark.parametrize("steps", [None, 50, 7])
def test_learned_range_spans_beta_tilde_to_beta_also_after_respacing(steps):
    full = DiscreteSchedule(cosine_betas(1000))
    s = full if steps is None else full.respace(spaced_timesteps(1000, steps, "even"))
    T = s.T
    t = torch.arange(T)
    x = torch.zeros(T, 1, dtype=torch.float64)
    eps = torch.zeros_like(x)

    def var(v):
        return p_mean_variance(s, x, t, eps, "learned_range", v=torch.full_like(x, v)).variance[:, 0]

    beta_tilde = s.betas * (1 - s.alphas_cumprod_prev) / (1 - s.alphas_cumprod)
    assert torch.allclose(var(1.0), s.betas, rtol=1e-12)  # v = +1: Σ = β_t
    assert torch.allclose(var(-1.0)[1:], beta_tilde[1:], rtol=1e-12)  # v = −1: Σ = β̃_t
    assert var(-1.0)[0] == pytest.approx(beta_tilde[1].item(), rel=1e-12)  # β̃_1 = 0 is clipped to β̃_2
    for v in (-0.5, 0.0, 0.7):
        # eq. 15 is geometric interpolation: log Σ is affine in v, between log β̃ and log β
        expected = torch.exp((v + 1) / 2 * s.betas.log() + (1 - v) / 2 * var(-1.0).log())
        assert torch.allclose(var(v), expected, rtol=1e-12)
        assert bool(((var(v) >= var(-1.0) * (1 - 1e-12)) & (var(v) <= s.betas * (1 + 1e-12))).all())


# ---------------------------------------------------------------- L_hybrid
class FixedOutput(nn.Module):
    """A "network" whose output is a parameter: gradients land directly on the output channels."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = nn.Parameter(out.clone())

    def forward(self, x, t):
        return self.out


def _images(B=6, C=3, H=2):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (B, C, H, H), generator=g) / 127.5 - 1).double()


def test_hybrid_mean_gradient_comes_only_from_l_simple():
    """iDDPM §3.1: the ε channels get exactly L_simple's gradient, the v channels only L_vlb's."""
    s = DiscreteSchedule(cosine_betas(100))
    x0 = _images()
    C = x0.shape[1]
    net = FixedOutput(0.3 * torch.randn(x0.shape[0], 2 * C, 2, 2, dtype=torch.float64))

    torch.manual_seed(1)
    hybrid = HybridLoss(lambda_vlb=0.001)(net, s, x0)
    g_hybrid = torch.autograd.grad(hybrid.loss, net.out)[0]
    torch.manual_seed(1)
    simple = SimpleLoss()(net, s, x0)  # same RNG → same t and ε
    g_simple = torch.autograd.grad(simple.loss, net.out)[0]
    assert torch.equal(hybrid.t, simple.t)
    # SimpleLoss computes in float32, hence the tolerance
    assert torch.allclose(g_hybrid[:, :C], g_simple[:, :C], rtol=1e-6, atol=1e-9)
    assert g_simple[:, C:].abs().max() == 0

    # term by term at one (x_t, t): mse ↔ ε channels, vb ↔ v channels; vb alone would move ε
    out = net.out.detach().clone().requires_grad_(True)
    t = torch.tensor([0, 1, 10, 50, 98, 99])
    noise = torch.randn_like(x0)
    x_t = s.q_sample(x0, t, noise)
    terms = HybridLoss.terms(s, x0, x_t, t, noise, out)
    g_mse = torch.autograd.grad(terms.mse.sum(), out)[0]
    g_vb = torch.autograd.grad(terms.vb.sum(), out)[0]
    assert g_mse[:, C:].abs().max() == 0 and g_mse[:, :C].abs().max() > 0
    assert g_vb[:, :C].abs().max() == 0 and g_vb[:, C:].abs().max() > 0
    unfrozen = VLBLoss()
    torch.manual_seed(1)
    g_vlb = torch.autograd.grad(unfrozen(net, s, x0).loss, net.out)[0]
    assert g_vlb[:, :C].abs().max() > 0  # L_vlb alone trains the mean: the stop-gradient matters


def test_hybrid_per_sample_is_mse_plus_lambda_T_vb():
    """L_hybrid = L_simple + λ L_vlb with L_vlb = Σ_t L_t ≈ T·L_t; λ = 1e-3 is improved-diffusion's vb·T/1000."""
    s = DiscreteSchedule(cosine_betas(400))
    x0 = _images()
    net = FixedOutput(0.3 * torch.randn(x0.shape[0], 6, 2, 2, dtype=torch.float64))
    torch.manual_seed(2)
    out = HybridLoss(lambda_vlb=0.001)(net, s, x0)
    torch.manual_seed(2)
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    terms = HybridLoss.terms(s, x0, s.q_sample(x0, t, noise), t, noise, net.out)
    assert torch.allclose(out.per_sample, terms.mse + s.T / 1000 * terms.vb, rtol=1e-12)
    assert out.loss.item() == pytest.approx(out.per_sample.mean().item(), rel=1e-12)


def test_objectives_reject_a_network_without_variance_channels():
    s = DiscreteSchedule(cosine_betas(10))
    x0 = _images()
    net = FixedOutput(torch.zeros_like(x0))
    with pytest.raises(ValueError, match="net.out_channels"):
        HybridLoss()(net, s, x0)
    with pytest.raises(ValueError, match="lambda_vlb"):
        HybridLoss(lambda_vlb=-1.0)


# ---------------------------------------------------------------- importance sampling of t
def _fill(sampler, per_t):
    """Feed each t its list of losses (one update per round, as training would)."""
    for k in range(max(len(v) for v in per_t.values())):
        ts = [t for t, v in per_t.items() if k < len(v)]
        sampler.update(torch.tensor(ts), torch.tensor([per_t[t][k] for t in ts], dtype=torch.float64))


def test_second_moment_sampler_is_uniform_until_every_t_has_a_full_history():
    sampler = LossSecondMomentSampler(T=4, history=3, uniform_prob=0.0)
    _fill(sampler, {0: [5.0, 5.0, 5.0], 1: [1.0, 1.0, 1.0], 2: [1.0, 2.0, 3.0], 3: [1.0, 1.0]})
    assert not sampler.warmed_up
    assert torch.equal(sampler.probabilities(4), torch.full((4,), 0.25, dtype=torch.float64))
    draw = sampler.sample(4, 1000, "cpu")
    assert torch.equal(draw.weights, torch.ones(1000)) and set(draw.t.tolist()) == {0, 1, 2, 3}


def test_second_moment_sampler_follows_root_mean_square_losses_once_warm():
    """iDDPM eq. 18: p_t ∝ √E[L_t²] over the last `history` losses, mixed with u/T uniform."""
    u = 0.001
    sampler = LossSecondMomentSampler(T=4, history=3, uniform_prob=u)
    # t = 0 receives 5 losses: only the last 3 (2, 3, 4) are kept
    _fill(sampler, {0: [100.0, 100.0, 2.0, 3.0, 4.0], 1: [1.0, 1.0, 1.0], 2: [1.0, 2.0, 3.0], 3: [0.5, 0.5, 0.5]})
    assert sampler.warmed_up
    assert sampler.loss_history[0].tolist() == [2.0, 3.0, 4.0]
    rms = torch.tensor([math.sqrt(29 / 3), 1.0, math.sqrt(14 / 3), 0.5], dtype=torch.float64)
    expected = (1 - u) * rms / rms.sum() + u / 4
    p = sampler.probabilities(4)
    assert torch.allclose(p, expected, rtol=1e-12) and p.sum().item() == pytest.approx(1.0, abs=1e-12)

    # the draws follow p, and each carries the weight 1/(T p_t)
    torch.manual_seed(0)
    n = 200_000
    draw = sampler.sample(4, n, "cpu")
    freq = torch.bincount(draw.t, minlength=4).double() / n
    assert (freq - p).abs().max() < 5 * (p * (1 - p) / n).sqrt().max()
    assert torch.allclose(draw.weights.double(), 1 / (4 * p[draw.t]), rtol=1e-6)


def test_importance_weights_make_the_estimator_unbiased():
    """E_{t∼p}[L_t/(T p_t)] = (1/T) Σ_t L_t for any p with full support: exactly and by sampling."""
    T = 50
    sampler = LossSecondMomentSampler(T=T, history=2)
    g = torch.Generator().manual_seed(0)
    _fill(sampler, {t: (torch.rand(2, generator=g) * (t + 1) ** 2).tolist() for t in range(T)})
    L = torch.rand(T, generator=g, dtype=torch.float64) * torch.arange(1, T + 1) ** 2
    torch.manual_seed(1)
    draw = sampler.sample(T, 100_000, "cpu")
    est = draw.weights.double() * L[draw.t]
    assert abs(est.mean().item() - L.mean().item()) < 4 * est.std().item() / math.sqrt(len(est))
    # and it has lower variance than uniform sampling when p ∝ the losses' scale
    uni = L[torch.randint(0, T, (100_000,))]
    assert est.var() < uni.var()


def test_vlb_loss_with_importance_sampling_estimates_the_bound():
    """VLBLoss's per-example T·L_t (uniform t) and its importance-weighted form (warm sampler) are
    unbiased for Σ_t E[L_t], which vlb_bits_per_dim evaluates term by term."""
    s = DiscreteSchedule(linear_betas(100, 1e-3, 0.15))
    gm = GaussianMixture([0.5, 0.5], [[-0.5], [0.5]], 0.05)
    x0 = torch.round((gm.sample(20000, generator=torch.Generator().manual_seed(0)).double().clamp(-1, 1) + 1) * 127.5) / 127.5 - 1

    def eps_v(x, t):  # exact ε and v = −1 (Σ = β̃, "fixedsmall")
        return torch.cat([gm.eps(x, s.alpha(t.long()), s.sigma(t.long())), -torch.ones_like(x)], 1)

    net = lambda x, t: eps_v(x, t)  # noqa: E731
    bound = vlb_bits_per_dim(lambda x, t: eps_v(x, t)[:, :1], s, x0, variance="fixedsmall", generator=torch.Generator().manual_seed(1))
    target = (bound.total_bpd - bound.prior_bpd).mean().item()
    torch.manual_seed(2)
    uniform = VLBLoss()(net, s, x0)
    se = uniform.per_sample.std().item() / math.sqrt(len(x0))
    assert abs(uniform.loss.item() - target) < 4 * se + 4 * bound.total_bpd.std().item() / math.sqrt(len(x0))

    sampler = LossSecondMomentSampler(T=s.T, history=10)
    objective = VLBLoss(timestep_sampler=sampler).train()
    torch.manual_seed(3)
    while not sampler.warmed_up:
        objective(net, s, x0[:2000])
    p = sampler.probabilities(s.T)
    assert p.std() > 0  # no longer uniform
    weighted = objective(net, s, x0)  # (this call updates the histories again, after drawing t)
    est = weighted.per_sample / (s.T * p[weighted.t])
    assert torch.allclose(weighted.loss, est.mean().to(weighted.loss.dtype), rtol=1e-6)
    assert abs(weighted.loss.item() - target) < 4 * est.std().item() / math.sqrt(len(x0)) + 4 * bound.total_bpd.std().item() / math.sqrt(len(x0))


def test_sampler_histories_are_saved_and_restored_exactly():
    a = LossSecondMomentSampler(T=5, history=2)
    _fill(a, {t: [float(t + 1), float(2 * t + 1)] for t in range(5)})
    b = LossSecondMomentSampler(T=5, history=2)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"loss_history", "loss_counts"}
    assert torch.equal(a.probabilities(5), b.probabilities(5))
    torch.manual_seed(7)
    da = a.sample(5, 64, "cpu")
    torch.manual_seed(7)
    assert torch.equal(da.t, b.sample(5, 64, "cpu").t)
    with pytest.raises(ValueError, match="objective.timestep_sampler.T"):
        a.sample(6, 4, "cpu")


def test_uniform_sampler_draws_like_l_simple():
    torch.manual_seed(3)
    draw = UniformSampler().sample(10, 32, "cpu")
    torch.manual_seed(3)
    assert torch.equal(draw.t, torch.randint(0, 10, (32,))) and torch.equal(draw.weights, torch.ones(32))


def _ddp_worker(rank: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    sampler = LossSecondMomentSampler(T=3, history=2)
    # rank 0 sees t = 0, 1; rank 1 sees only t = 2 (unequal batch sizes)
    if rank == 0:
        sampler.update(torch.tensor([0, 1]), torch.tensor([1.0, 2.0], dtype=torch.float64))
    else:
        sampler.update(torch.tensor([2]), torch.tensor([3.0], dtype=torch.float64))
    torch.save(sampler.state_dict(), f"{out_file}.{rank}")
    dist.destroy_process_group()


def test_sampler_gathers_losses_across_ranks(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # CPU only; fork avoids re-importing the package
    procs = [ctx.Process(target=_ddp_worker, args=(r, str(tmp_path / "pg"), str(tmp_path / "state"))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    states = [torch.load(tmp_path / f"state.{r}", weights_only=True) for r in range(2)]
    for st in states:
        assert st["loss_counts"].tolist() == [1, 1, 1]
        assert st["loss_history"][:, 0].tolist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------- the bound in bits/dim
def _gaussian_kl_closed_forms(s: DiscreteSchedule, var: float, variance: str) -> torch.Tensor:
    """E[L_{t−1}] in bits/dim, index ≥ 1, for x_0 ~ N(0, var) and the exact ε (Tweedie mean):
    KL(N(μ̃, β̃) ‖ N(μ̃(E[x_0|x_t]), σ²)) averages to ½[log σ²/β̃ + β̃/σ² − 1 + c₁² Var[x_0|x_t]/σ²]."""
    ab = s.alphas_cumprod
    beta_tilde = s.betas * (1 - s.alphas_cumprod_prev) / (1 - ab)
    post_var_x0 = var * (1 - ab) / (ab * var + 1 - ab)
    sigma2 = beta_tilde if variance == "fixedsmall" else s.betas
    kl = 0.5 * (torch.log(sigma2 / beta_tilde) + beta_tilde / sigma2 - 1 + s.posterior_mean_coef1**2 * post_var_x0 / sigma2)
    return kl[1:] / LN2


@pytest.mark.parametrize("variance", ["fixedsmall", "fixedlarge"])
@pytest.mark.parametrize("respaced", [False, True])
def test_vlb_terms_match_closed_forms_for_gaussian_data(variance, respaced):
    var = 0.3**2
    full = DiscreteSchedule(linear_betas(200, 5e-4, 0.1))
    s = full.respace(spaced_timesteps(200, 25, "even")) if respaced else full

    def eps_fn(x, t):  # exact ε of N(0, var): σ_t x / (ᾱ_t var + σ_t²), at the original index t
        ab = full.alphas_cumprod[t][:, None]
        return (1 - ab).sqrt() * x / (ab * var + 1 - ab)

    x0 = torch.randn(4000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * math.sqrt(var)
    out = vlb_bits_per_dim(eps_fn, s, x0, variance=variance, generator=torch.Generator().manual_seed(1))
    assert out.terms_bpd.shape == (4000, s.T)
    assert torch.allclose(out.total_bpd, out.prior_bpd + out.terms_bpd.sum(1))
    expected = _gaussian_kl_closed_forms(s, var, variance)
    mean, se = out.terms_bpd[:, 1:].mean(0), out.terms_bpd[:, 1:].std(0) / math.sqrt(4000)
    assert ((mean - expected).abs() < 5 * se + 1e-12).all()
    total, total_se = out.terms_bpd[:, 1:].sum(1).mean(), out.terms_bpd[:, 1:].sum(1).std() / math.sqrt(4000)
    assert abs(total - expected.sum()) < 4 * total_se
    ab_T = s.alphas_cumprod[-1]
    prior = 0.5 * (ab_T * var + (1 - ab_T) - 1 - torch.log(1 - ab_T)) / LN2
    assert out.prior_bpd.mean().item() == pytest.approx(prior.item(), rel=0.1)


def test_vlb_is_an_upper_bound_on_the_nll_of_discrete_data():
    """Data on 5 of the 256 levels: any model's expected code length is ≥ the entropy H (Gibbs), and
    the bound is ≥ the model's code length — with the exact ε, for full and respaced schedules."""
    full = DiscreteSchedule(linear_betas(250, 4e-4, 0.08))
    levels = torch.round((torch.tensor([-0.5, -0.25, 0.0, 0.25, 0.5], dtype=torch.float64) + 1) * 127.5) / 127.5 - 1
    w = torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1], dtype=torch.float64)
    entropy_bits = -(w * w.log2()).sum().item()
    gm = GaussianMixture(w, levels[:, None], 1e-3)  # near-deltas, well inside their 2/255 bins

    def eps_fn(x, t):
        return gm.eps(x, full.alpha(t), full.sigma(t))

    x0 = levels[torch.multinomial(w, 1000, replacement=True, generator=torch.Generator().manual_seed(0))][:, None]
    for s in (full, full.respace(spaced_timesteps(250, 50, "even"))):
        for variance in ("fixedsmall", "fixedlarge"):
            out = vlb_bits_per_dim(eps_fn, s, x0, variance=variance, generator=torch.Generator().manual_seed(1))
            se = out.total_bpd.std().item() / math.sqrt(len(x0))
            assert out.total_bpd.mean().item() > entropy_bits - 3 * se, (s.T, variance)
            assert torch.isfinite(out.total_bpd).all()


def test_vlb_uses_learned_variances_and_original_timesteps():
    full = DiscreteSchedule(cosine_betas(100))
    s = full.respace(spaced_timesteps(100, 10, "even"))
    seen = []

    def eps_v(x, t):
        seen.extend(t.unique().tolist())
        return torch.cat([torch.zeros_like(x), torch.ones_like(x)], 1)  # v = +1: Σ = β

    x0 = _images(B=2)
    learned = vlb_bits_per_dim(eps_v, s, x0, variance="learned_range", generator=torch.Generator().manual_seed(0))
    assert sorted(seen) == s.timesteps.tolist()
    large = vlb_bits_per_dim(lambda x, t: eps_v(x, t)[:, :3], s, x0, variance="fixedlarge", generator=torch.Generator().manual_seed(0))
    # identical except the decoder (fixedlarge uses β̃_2 at t = 1, learned_range at v = 1 uses β_1)
    assert torch.allclose(learned.terms_bpd[:, 1:], large.terms_bpd[:, 1:], rtol=1e-10)
    assert not torch.allclose(learned.terms_bpd[:, 0], large.terms_bpd[:, 0])
