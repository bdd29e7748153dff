"""Score SDE forward processes (VP / sub-VP / VE) against their closed forms."""

import math

import pytest
import torch

from diffzoo.schedules import DiscreteSchedule, linear_betas
from diffzoo.schedules.sde import SubVPSDE, VESDE, VPSDE

ALL_SDES = [VPSDE, SubVPSDE, VESDE]


def _t(values, dtype=torch.float64):
    return torch.as_tensor(values, dtype=dtype)


# ---------------------------------------------------------------------- discretisations
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vp_discretisation_is_ddpm_linear_schedule(dtype):
    """Score SDE §3.4: VP with N = 1000 is DDPM's linear β from 1e-4 to 0.02, step by step."""
    sde = VPSDE(N=1000)
    N = 1000
    betas = linear_betas(1000)
    i = torch.arange(N)
    t = (i.double() / (N - 1)).to(dtype)  # the continuous time of step i
    x = torch.randn(N, 3, dtype=torch.float64)
    f, G = sde.discretize(x.to(dtype), t)
    rtol = 1e-12 if dtype == torch.float64 else 1e-6  # "exactly", to the dtype's precision
    torch.testing.assert_close(G.double() ** 2, betas, rtol=rtol, atol=0.0)
    # DDPM eq. 2: x_{i+1} = √(1 − β_i) x_i + √β_i z, so f_i = (√(1 − β_i) − 1) x_i
    expected_f = (torch.sqrt(1 - betas)[:, None] - 1) * x.to(dtype).double()
    torch.testing.assert_close(f.double(), expected_f, rtol=rtol, atol=1e-14)
    # and the closed-form β_i = (β_min + i/(N−1)(β_max − β_min))/N
    torch.testing.assert_close(sde.discrete_betas, (0.1 + i.double() / (N - 1) * (20 - 0.1)) / N)


def test_ve_sigma_and_diffusion_closed_form():
    """σ(t) = σ_min(σ_max/σ_min)^t and g(t) = σ(t)√(2 ln(σ_max/σ_min)) = 4.1273·σ(t) (defaults)."""
    sde = VESDE()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(sde.sigma(t), 0.01 * 5000.0**t)
    _, g = sde.sde(torch.zeros(11, 1, dtype=torch.float64), t)
    torch.testing.assert_close(g, 0.01 * 5000.0**t * math.sqrt(2 * math.log(5000)))
    assert abs(math.sqrt(2 * math.log(5000)) - 4.1273) < 1e-4
    torch.testing.assert_close(g / sde.sigma(t), torch.full_like(t, 4.1273), atol=1e-4, rtol=0)


def test_ve_discretisation_is_smld_geometric_ladder():
    """Discrete VE: σ_i = geometric from σ_min to σ_max, x_i = x_{i−1} + √(σ_i² − σ_{i−1}²) z, σ_{−1} = 0."""
    N = 50
    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=N)
    sigmas = torch.tensor([0.01 * (5000.0 ** (i / (N - 1))) for i in range(N)], dtype=torch.float64)
    torch.testing.assert_close(sde.discrete_sigmas, sigmas)
    t = torch.arange(N, dtype=torch.float64) / (N - 1)
    f, G = sde.discretize(torch.ones(N, 2, dtype=torch.float64), t)
    prev = torch.cat([torch.zeros(1, dtype=torch.float64), sigmas[:-1]])
    torch.testing.assert_close(G**2, sigmas**2 - prev**2)
    assert torch.all(f == 0)


# ---------------------------------------------------------------------- marginals
def test_vp_mean_coefficient_closed_form():
    """PAPERS §10a: VP mean coefficient exp(−¼t²·19.9 − ½·0.1t); VP var 1 − α², sub-VP std 1 − α²."""
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    alpha = torch.exp(-0.25 * t**2 * 19.9 - 0.5 * 0.1 * t)
    vp, sub = VPSDE(), SubVPSDE()
    x = torch.ones(21, 1, dtype=torch.float64)
    mean, std = vp.marginal_prob(x, t)
    torch.testing.assert_close(mean[:, 0], alpha)
    torch.testing.assert_close(std, torch.sqrt(1 - alpha**2))
    mean, std = sub.marginal_prob(x, t)
    torch.testing.assert_close(mean[:, 0], alpha)
    torch.testing.assert_close(std, 1 - alpha**2)
    assert abs(vp.alpha(_t([1.0])).item() - 6.57e-3) < 1e-5  # PAPERS §10d


@pytest.mark.parametrize("cls", ALL_SDES)
def test_marginal_moments_solve_the_sde_moment_equations(cls):
    """For dx = a(t)x dt + g(t) dw the kernel N(α x_0, σ²) must satisfy dα/dt = aα and
    dσ²/dt = 2aσ² + g² (finite differences of marginal_prob against sde())."""
    sde = cls()
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    h = 1e-6
    ones = torch.ones(25, 1, dtype=torch.float64)
    drift, g = sde.sde(ones, t)
    a = drift[:, 0]  # drift is linear: f(x, t) = a(t) x
    dalpha = (sde.alpha(t + h) - sde.alpha(t - h)) / (2 * h)
    dvar = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(dalpha, a * sde.alpha(t), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(dvar, 2 * a * sde.sigma(t) ** 2 + g**2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", ALL_SDES)
def test_marginal_prob_matches_monte_carlo_of_the_sde(cls):
    """Euler–Maruyama simulation of the forward SDE from x(0) = α(0)x_0 + σ(0)ε (σ(0) = σ_min for
    VE — the Score SDE convention) has the moments of marginal_prob at t = 0.5."""
    sde = cls()
    gen = torch.Generator().manual_seed(0)
    n, steps, t_end = 20000, 400, 0.5
    m0, s0 = 0.7, 0.2  # x_0 ~ N(m0, s0²)
    x0 = m0 + s0 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    t0 = torch.zeros(n, dtype=torch.float64)
    mean0, std0 = sde.marginal_prob(x0, t0)
    x = mean0 + std0[:, None] * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    dt = t_end / steps
    for k in range(steps):
        t = torch.full((n,), k * dt, dtype=torch.float64)
        drift, g = sde.sde(x, t)
        x = x + drift * dt + g[:, None] * math.sqrt(dt) * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    te = torch.full((1,), t_end, dtype=torch.float64)
    alpha, sigma = sde.alpha(te).item(), sde.sigma(te).item()
    exact_mean, exact_var = alpha * m0, alpha**2 * s0**2 + sigma**2
    se_mean = math.sqrt(exact_var / n)
    assert abs(x.mean().item() - exact_mean) < 4 * se_mean + 1e-3
    assert abs(x.var().item() / exact_var - 1) < 4 * math.sqrt(2 / n) + 0.01


# ---------------------------------------------------------------------- prior
@pytest.mark.parametrize("cls,scale", [(VPSDE, 1.0), (SubVPSDE, 1.0), (VESDE, 50.0)])
def test_prior_sampling_and_logp(cls, scale):
    sde = cls()
    gen = torch.Generator().manual_seed(1)
    z = sde.prior_sampling((4000, 3, 2, 2), gen, dtype=torch.float64)
    assert z.shape == (4000, 3, 2, 2)
    assert abs(z.std().item() / scale - 1) < 0.03
    expected = torch.distributions.Normal(0.0, scale).log_prob(z).flatten(1).sum(-1)
    torch.testing.assert_close(sde.prior_logp(z), expected)


# ---------------------------------------------------------------------- reverse SDE / ODE
@pytest.mark.parametrize("cls", ALL_SDES)
def test_probability_flow_velocity_of_a_gaussian(cls):
    """For x_0 ~ N(m, s²), x_t = αm + √(α²s² + σ²) z; the probability-flow ODE keeps z fixed, so
    dx/dt = α'm + (d√v/dt)(x − αm)/√v with v = α²s² + σ² (Score SDE eq. 13 with the exact score)."""
    sde = cls()
    m, s = 0.4, 0.3
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    x = torch.linspace(-2, 2, 19, dtype=torch.float64)[:, None]

    def score(x, t):
        a, sig = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
        return -(x - a * m) / (a**2 * s**2 + sig**2)

    h = 1e-6

    def std(t):
        return torch.sqrt(sde.alpha(t) ** 2 * s**2 + sde.sigma(t) ** 2)

    alpha = sde.alpha(t)
    dalpha = (sde.alpha(t + h) - sde.alpha(t - h)) / (2 * h)
    dstd = (std(t + h) - std(t - h)) / (2 * h)
    expected = dalpha[:, None] * m + (dstd / std(t))[:, None] * (x - alpha[:, None] * m)
    drift, diffusion = sde.reverse(score, probability_flow=True).sde(x, t)
    torch.testing.assert_close(drift, expected, rtol=1e-5, atol=1e-6)
    assert torch.all(diffusion == 0)
    # the reverse SDE: drift f − g²s, diffusion g
    f, g = sde.sde(x, t)
    rdrift, rdiff = sde.reverse(score).sde(x, t)
    torch.testing.assert_close(rdrift, f - g[:, None] ** 2 * score(x, t))
    torch.testing.assert_close(rdiff, g)


def test_vp_ancestral_step_is_ddpm_posterior():
    """With the exact score of a point mass x_0 = m under the discrete chain, the VP ancestral
    step is DDPM's q(x_{i−1} | x_i, x_0) mean (eqs. 6–7 = eq. 11 with the exact ε) with σ² = β_i."""
    N = 1000
    sde = VPSDE(N=N)
    sched = DiscreteSchedule(linear_betas(N))
    idx = torch.tensor([1, 10, 250, 600, 999])
    t = idx.double() / (N - 1)
    m = torch.tensor([[0.3, -0.7]], dtype=torch.float64).expand(5, 2)
    x = torch.randn(5, 2, dtype=torch.float64)
    ac = sched.alphas_cumprod[idx][:, None]
    score = -(x - ac.sqrt() * m) / (1 - ac)
    mean, std = sde.ancestral_step(x, t, score)
    torch.testing.assert_close(mean, sched.q_posterior(m, x, idx).mean)
    torch.testing.assert_close(std**2, sched.betas[idx])


def test_ve_ancestral_step_is_smld_bridge():
    """For a point mass x_0 = m and x_i = m + σ_i z, the SMLD ancestral step with the exact
    score equals the Gaussian bridge x_{i−1} | x_i: mean m + (σ_{i−1}²/σ_i²)(x_i − m),
    variance σ_{i−1}²(σ_i² − σ_{i−1}²)/σ_i²."""
    N = 100
    sde = VESDE(N=N)
    idx = torch.tensor([1, 5, 50, 99])
    t = idx.double() / (N - 1)
    sig, prev = sde.discrete_sigmas[idx], sde.discrete_sigmas[idx - 1]
    m = torch.tensor([[1.5]], dtype=torch.float64)
    x = m + sig[:, None] * torch.randn(4, 1, dtype=torch.float64)
    mean, std = sde.ancestral_step(x, t, -(x - m) / sig[:, None] ** 2)
    torch.testing.assert_close(mean, m + (prev**2 / sig**2)[:, None] * (x - m))
    torch.testing.assert_close(std**2, prev**2 * (sig**2 - prev**2) / sig**2)


def test_sub_vp_has_no_ancestral_chain():
    with pytest.raises(ValueError, match="reverse_diffusion"):
        SubVPSDE().ancestral_step(torch.zeros(2, 1), torch.ones(2), torch.zeros(2, 1))


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="beta_min"):
        VPSDE(beta_min=5, beta_max=1)
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(sigma_min=0.0)
    with pytest.raises(ValueError, match="N must be"):
        VESDE(N=1)


def test_pc_time_grid_maps_onto_the_discrete_steps():
    sde = VPSDE(N=10)
    assert sde.T == 1.0
    # grid t_i = linspace(1, eps, N) of the PC sampler lands on indices N−1, …, 0
    t = torch.linspace(1.0, 1e-3, 10, dtype=torch.float32)
    assert sde._index(t).tolist() == list(range(9, -1, -1))
