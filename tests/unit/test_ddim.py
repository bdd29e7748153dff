"""DDIM (Song et al. 2020) against closed forms and the exact ε of Gaussian mixtures."""

import math

import numpy as np
import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.samplers.ddim import ddim, ddim_sigma
from diffzoo.samplers.ddim_inversion import ddim_decode, ddim_encode, interpolation_grid, slerp
from diffzoo.samplers.ddpm import ddpm
from diffzoo.schedules import DiscreteSchedule, cosine_betas, linear_betas
from diffzoo.utils.random import per_sample_generators
from tests.unit.test_ddpm_sampler import MIXTURE, assert_matches_mixture, exact_eps_fn

MIXTURE_1D = GaussianMixture(weights=[0.4, 0.6], means=[[-0.6], [0.5]], covs=[0.1, 0.2])


def ddim_subsequence(s: DiscreteSchedule, steps: int, skip: str) -> DiscreteSchedule:
    """The schedule on the grid DDIM walks (its ᾱ at τ, ``timesteps`` = τ)."""
    return s.respace([int(t) for t in s.time_grid(steps, skip)])


# ---------------------------------------------------------------- σ_t(η), sub-sequences
@pytest.mark.parametrize("betas", [linear_betas(1000), cosine_betas(1000)], ids=["linear", "cosine"])
def test_eta_one_over_the_full_sequence_gives_the_posterior_variance(betas):
    """DDIM eq. 16 at η = 1 and S = T: σ_t² = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t = β̃_t (DDPM eq. 7)."""
    s = DiscreteSchedule(betas)
    full = ddim_subsequence(s, s.T, "uniform")
    assert torch.equal(full.timesteps, torch.arange(s.T))
    sigma = ddim_sigma(full.alphas_cumprod, full.alphas_cumprod_prev, 1.0)
    beta_tilde = s.betas * (1 - s.alphas_cumprod_prev) / (1 - s.alphas_cumprod)
    assert torch.allclose(sigma**2, beta_tilde, rtol=1e-9, atol=0)
    assert torch.equal(ddim_sigma(full.alphas_cumprod, full.alphas_cumprod_prev, 0.0), torch.zeros(s.T, dtype=torch.float64))
    # σ scales linearly with η
    assert torch.allclose(ddim_sigma(full.alphas_cumprod, full.alphas_cumprod_prev, 0.3), 0.3 * sigma)


def test_eta_one_over_the_full_sequence_is_ddpm_with_small_variance():
    """With σ_t² = β̃_t, eq. 12's mean √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − β̃_t) ε is the posterior
    mean μ̃_t(x̂_0, x_t): DDIM(η = 1, S = T) and DDPM(Σ = β̃) give the same samples from the same noise."""
    s = DiscreteSchedule(linear_betas(50, 1e-3, 0.2))
    eps_fn = exact_eps_fn(s, MIXTURE)
    x_T = torch.randn(64, 2, dtype=torch.float64)
    a = ddim(eps_fn, s, x_T, s.T, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = ddpm(eps_fn, s, x_T, variance="fixedsmall", clip_x0=False, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("S", [10, 20, 50, 100, 1000])
def test_subsequences_follow_the_ddim_code(S):
    """DDIM §4.2 / code ``skip_type``: uniform = range(0, T, T // S); quad = int(linspace(0, √(0.8T), S)²)."""
    T = 1000
    s = DiscreteSchedule(linear_betas(T))
    assert ddim_subsequence(s, S, "uniform").timesteps.tolist() == list(range(0, T, T // S))
    quad = sorted({int(v) for v in np.linspace(0, np.sqrt(0.8 * T), S) ** 2})
    sub = ddim_subsequence(s, S, "quad")
    assert sub.timesteps.tolist() == quad
    assert torch.allclose(sub.alphas_cumprod, s.alphas_cumprod[quad], rtol=1e-12)


@pytest.mark.parametrize("T,S", [(1000, 300), (1000, 501), (1000, 999), (1000, 7), (4000, 1500), (4000, 2001)])
def test_uniform_grid_starts_at_the_top_when_steps_do_not_divide_T(T, S):
    """Review A2: cutting ``range(0, T, T // S)`` to S entries started S = 501 at t = 500 (28 % signal
    left) from pure noise. The grid has exactly S steps (the NFE budget), increasing, the DDIM code's
    spacing ⌊T/S⌋ or ⌈T/S⌉ between them, and its top within one spacing of T − 1."""
    grid = [int(t) for t in DiscreteSchedule(linear_betas(T)).time_grid(S, "uniform")]
    assert len(grid) == S and grid[0] == 0 and all(b > a for a, b in zip(grid, grid[1:]))
    assert {b - a for a, b in zip(grid, grid[1:])} <= {T // S, -(-T // S)}
    assert grid[-1] >= T - 1 - -(-T // S)


def test_ddim_with_a_step_count_that_does_not_divide_T_reproduces_the_mixture():
    """S = 501 ∤ 1000: the chain starts at the top (t = 998, √ᾱ ≈ 0.006), so exact ε reproduces the data
    (modes at ±2, std 0.3). Started at t = 500 from N(0, I), as before the fix, where q(x_500) still
    holds 28 % of the signal, the modes came out at ±1.96 — eight standard errors off."""
    s = DiscreteSchedule(linear_betas(1000))
    gm = GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], 0.3)
    gen = torch.Generator().manual_seed(4)
    x_T = torch.randn(4000, 1, generator=gen, dtype=torch.float64)
    nfe = []
    x = ddim(exact_eps_fn(s, gm), s, x_T, 501, callback=lambda d: nfe.append(d["nfe"]))
    assert nfe[-1] == 501
    se = 0.3 / math.sqrt(x.shape[0])
    assert abs(x.abs().mean().item() - 2.0) < 4 * se
    assert abs((x.abs() - 2).std().item() - 0.3) < 0.03


def _ddim_code_reference(eps_fn, alphas_cumprod, seq, x, eta, noise):
    """DDIM eq. 12 written out over an index list exactly as the DDIM code iterates it: ᾱ padded
    with 1 in front, previous index −1 for the first element, repeated indices kept."""
    abar = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod])
    seq_next = [-1] + list(seq[:-1])
    for k, (i, j) in enumerate(zip(reversed(seq), reversed(seq_next))):
        at, an = abar[i + 1], abar[j + 1]
        e = eps_fn(x, torch.full((x.shape[0],), i, dtype=torch.long))
        x0 = (x - e * (1 - at).sqrt()) / at.sqrt()
        c1 = eta * ((1 - at / an) * (1 - an) / (1 - at)).sqrt()
        c2 = ((1 - an) - c1**2).sqrt()
        x = an.sqrt() * x0 + c1 * noise[k] + c2 * e
    return x


@pytest.mark.parametrize("skip,S", [("uniform", 20), ("quad", 50)])
def test_ddim_matches_eq_12_over_the_code_subsequence(skip, S):
    """Against eq. 12 iterated over the DDIM code's own index list; for quad at S = 50 that list
    repeats index 0, an identity step, which diffzoo drops (one network call less)."""
    T = 1000
    s = DiscreteSchedule(linear_betas(T))
    eps_fn = exact_eps_fn(s, MIXTURE)
    if skip == "uniform":
        seq = list(range(0, T, T // S))
    else:
        seq = [int(v) for v in np.linspace(0, np.sqrt(0.8 * T), S) ** 2]
        assert len(set(seq)) < len(seq)  # the code's list has repeats here
    x_T = torch.randn(32, 2, dtype=torch.float64)
    ref = _ddim_code_reference(eps_fn, s.alphas_cumprod, seq, x_T, 0.0, [0.0] * len(seq))
    nfe = []
    out = ddim(eps_fn, s, x_T, S, eta=0.0, skip=skip, callback=lambda d: nfe.append(d["nfe"]))
    assert torch.allclose(out, ref, atol=1e-9, rtol=0)
    assert nfe[-1] == len(set(seq))


def test_ddim_passes_original_timesteps_in_decreasing_order_and_reports_nfe():
    s = DiscreteSchedule(linear_betas(1000))
    seen, infos = [], []

    def eps_fn(x, t):
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    ddim(eps_fn, s, torch.randn(3, 2), 10, callback=infos.append)
    assert seen == list(range(900, -1, -100))
    assert [d["t"] for d in infos] == seen and [d["nfe"] for d in infos] == list(range(1, 11))
    # on an already respaced schedule, steps count *its* steps and t still maps to the original
    respaced = s.respace(list(range(0, 1000, 10)))
    seen.clear()
    ddim(eps_fn, respaced, torch.randn(3, 2), 5)
    assert seen == [800, 600, 400, 200, 0]


# ---------------------------------------------------------------- sampling the mixture
@pytest.mark.parametrize("eta,steps", [(0.0, 50), (0.5, 100), (1.0, 100)])
def test_ddim_with_exact_eps_reproduces_the_mixture(eta, steps):
    s = DiscreteSchedule(linear_betas(1000))
    gen = torch.Generator().manual_seed(1)
    x_T = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    x = ddim(exact_eps_fn(s, MIXTURE), s, x_T, steps, eta=eta, generator=gen)
    assert_matches_mixture(x, MIXTURE)


def test_sigma_hat_is_ddpm_large_variance_on_the_subsequence():
    """DDIM Table 1, row σ̂: σ̂² = 1 − ᾱ_τi/ᾱ_τi−1 with the DDPM ancestral step = DDPM with Σ = β on the
    respaced schedule (same noise draws)."""
    s = DiscreteSchedule(linear_betas(1000))
    eps_fn = exact_eps_fn(s, MIXTURE)
    x_T = torch.randn(16, 2, dtype=torch.float64)
    a = ddim(eps_fn, s, x_T, 25, sigma_hat=True, clip_x0=True, generator=torch.Generator().manual_seed(5))
    sub = s.respace(range(0, 1000, 40))
    b = ddpm(eps_fn, sub, x_T, variance="fixedlarge", clip_x0=True, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(a, b, atol=1e-10, rtol=0)


def test_sigma_hat_row_clips_x0_as_the_ddim_codes_ddpm_steps():
    """Review A7: the DDIM code's σ̂ row (``ddpm_steps``) clamps x̂₀ to [−1, 1]; ``generalized_steps``
    (the η rows) does not. With no ``clip_x0`` given, each row does what the DDIM code does."""
    s = DiscreteSchedule(linear_betas(1000))
    eps_fn = lambda x, t: 1.1 * exact_eps_fn(s, MIXTURE)(x, t) + 0.1  # noqa: E731 - imperfect: x̂₀ saturates
    x_T = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def run(**kw):
        return ddim(eps_fn, s, x_T, 10, generator=torch.Generator().manual_seed(9), **kw)

    assert torch.equal(run(sigma_hat=True), run(sigma_hat=True, clip_x0=True))
    assert not torch.allclose(run(sigma_hat=True), run(sigma_hat=True, clip_x0=False))
    assert torch.equal(run(), run(clip_x0=False))


def test_learned_variance_channels_are_ignored_and_clipping_bounds_x0():
    s = DiscreteSchedule(linear_betas(100))
    eps_fn = exact_eps_fn(s, MIXTURE)
    x_T = torch.randn(8, 2, dtype=torch.float64)
    a = ddim(eps_fn, s, x_T, 10)
    b = ddim(lambda x, t: torch.cat([eps_fn(x, t), torch.randn_like(x)], 1), s, x_T, 10)
    assert torch.equal(a, b)
    x0s = []
    out = ddim(lambda x, t: -10 * torch.ones_like(x), s, x_T, 10, clip_x0=True, callback=lambda d: x0s.append(d["x0"]))
    assert all(x0.abs().max() <= 1 for x0 in x0s) and out.abs().max() <= 1 + 1e-12


def test_per_sample_generators_make_stochastic_ddim_independent_of_batching():
    s = DiscreteSchedule(linear_betas(100))
    eps_fn = exact_eps_fn(s, MIXTURE)
    x_T = torch.randn(6, 2, dtype=torch.float64)
    full = ddim(eps_fn, s, x_T, 10, eta=0.7, generator=per_sample_generators(0, range(6)))
    part = ddim(eps_fn, s, x_T[2:], 10, eta=0.7, generator=per_sample_generators(0, range(2, 6)))
    assert torch.equal(full[2:], part)


def test_invalid_options_name_the_allowed_values():
    s = DiscreteSchedule(linear_betas(10))
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="uniform, quad"):
        ddim(lambda x, t: x, s, x, 5, skip="linear")
    with pytest.raises(ValueError, match=r"steps=20 must be an integer in \[1, 10\]"):
        ddim(lambda x, t: x, s, x, 20)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        ddim(lambda x, t: x, s, x, 5, eta=1.5)
    with pytest.raises(ValueError, match="set sampler.eta=0"):
        ddim(lambda x, t: x, s, x, 5, eta=0.5, sigma_hat=True)


# ---------------------------------------------------------------- encode / decode / interpolate
def test_encode_decode_error_falls_with_steps_and_vanishes_at_T():
    """DDIM §5.4 / Table 2 with the exact ε of a 1-D mixture and linear β: the η = 0 round trip
    x_0 → x_T → x_0 converges as S grows (PAPERS §6d: 3.3e-2 … 3.3e-5 for S = 10 … 1000)."""
    s = DiscreteSchedule(linear_betas(1000))
    eps_fn = exact_eps_fn(s, MIXTURE_1D)
    x0 = MIXTURE_1D.sample(400, generator=torch.Generator().manual_seed(0)).double()
    errors, latent = [], None
    for S in (10, 20, 50, 100, 1000):
        latent = ddim_encode(eps_fn, s, x0, S)
        errors.append(((ddim_decode(eps_fn, s, latent, S) - x0) ** 2).mean().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4, errors
    # the η = 0 flow carries the data distribution to q(x_T) ≈ N(0, 1) (ᾱ_T ≈ 4e-5)
    se = 1 / math.sqrt(latent.shape[0])
    assert abs(latent.mean().item()) < 4 * se and abs(latent.std().item() - 1) < 4 * se


def test_encode_steps_up_through_the_subsequence():
    s = DiscreteSchedule(linear_betas(1000))
    infos = []
    x0 = torch.zeros(2, 1, dtype=torch.float64)
    ddim_encode(lambda x, t: torch.ones_like(x), s, x0, 4, callback=infos.append)
    assert [d["t"] for d in infos] == [0, 250, 500, 750]
    # with ε ≡ 1 from x_0 = 0 every level holds x̂_0 = 0, so x_{τ_i} = √(1 − ᾱ_{τ_i})
    expected = (1 - s.alphas_cumprod[[0, 250, 500, 750]]).sqrt()
    assert torch.allclose(torch.stack([d["x"][0, 0] for d in infos]), expected, rtol=1e-12)


def test_slerp_closed_forms():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(5, 3, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(slerp(z0, z1, 0.0), z0) and torch.allclose(slerp(z0, z1, 1.0), z1)
    # orthonormal pair: the midpoint is (e0 + e1)/√2 and every point stays on the unit circle
    e0, e1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(slerp(e0, e1, 0.5), (e0 + e1) / math.sqrt(2))
    for a in (0.1, 0.3, 0.9):
        p = slerp(e0, e1, a)
        assert torch.allclose(p, torch.tensor([[math.cos(a * math.pi / 2), math.sin(a * math.pi / 2)]], dtype=torch.float64))
    # per-row α, and parallel rows fall back to the straight line
    alphas = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    rows = slerp(z0, z1, alphas)
    assert torch.allclose(rows[2], slerp(z0[2:3], z1[2:3], 0.5)[0])
    assert torch.allclose(slerp(z0, 2 * z0, 0.5), 1.5 * z0)


def test_interpolation_grid_writes_a_png_whose_ends_decode_the_latents(tmp_path):
    from PIL import Image

    s = DiscreteSchedule(linear_betas(100))

    def eps_fn(x, t):
        return 0.1 * x

    z0, z1 = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    grid = interpolation_grid(eps_fn, s, z0, z1, tmp_path / "interp.png", num=5, steps=10)
    assert grid.images.shape == (10, 1, 4, 4) and grid.path.is_file()
    assert torch.allclose(grid.images[0], ddim_decode(eps_fn, s, z0[:1], 10, clip_x0=True)[0], atol=1e-6)
    assert torch.allclose(grid.images[9], ddim_decode(eps_fn, s, z1[1:], 10, clip_x0=True)[0], atol=1e-6)
    width, height = Image.open(grid.path).size
    assert width > 2 * height  # 5 columns, 2 rows
