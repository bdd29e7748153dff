"""Discrete schedules against closed forms (DDPM eqs. 4, 6–7; Improved DDPM eq. 17)."""

import math

import numpy as np
import pytest
import torch

from diffzoo.schedules import (
    DiscreteSchedule,
    betas_from_alphas_cumprod,
    cosine_betas,
    linear_betas,
    scaled_linear_betas,
    spaced_timesteps,
    sqrt_linear_betas,
)


def _prod_one_minus(betas):
    return math.exp(math.fsum(math.log1p(-b) for b in betas))


@pytest.mark.parametrize(
    "betas",
    [
        np.linspace(1e-4, 0.02, 1000),
        np.linspace(math.sqrt(0.0015), math.sqrt(0.0195), 1000) ** 2,
    ],
    ids=["linear", "sqrt_linear"],
)
def test_alphas_cumprod_is_product_of_one_minus_beta(betas):
    s = DiscreteSchedule(torch.tensor(betas))
    for i in (0, 1, 499, 999):
        assert s.alphas_cumprod[i].item() == pytest.approx(_prod_one_minus(betas[: i + 1]), rel=1e-12)


def test_named_tables_match_their_formulas():
    T = 1000
    assert torch.allclose(linear_betas(T), torch.tensor(np.linspace(1e-4, 0.02, T)))
    assert torch.allclose(sqrt_linear_betas(T), torch.tensor(np.linspace(0.0015**0.5, 0.0195**0.5, T) ** 2))
    # Improved DDPM "linear" at T = 4000 is DDPM's with end points scaled by 1000/T.
    assert torch.allclose(scaled_linear_betas(4000), torch.tensor(np.linspace(0.25e-4, 0.005, 4000)))
    for b in (linear_betas(T), cosine_betas(T), sqrt_linear_betas(T)):
        assert b.dtype == torch.float64 and b.shape == (T,)


def test_reference_values_of_alpha_bar_T():
    # PAPERS §5d / §15d: DDPM linear ᾱ_T ≈ 4.036e-5, LDM sqrt-linear ᾱ_T ≈ 1.42e-4.
    ddpm = DiscreteSchedule(linear_betas(1000)).alphas_cumprod[-1].item()
    ldm = DiscreteSchedule(sqrt_linear_betas(1000)).alphas_cumprod[-1].item()
    assert ddpm == pytest.approx(4.036e-5, rel=1e-3)
    assert ldm == pytest.approx(1.42e-4, rel=1e-2)


@pytest.mark.parametrize("T", [1000, 4000])
def test_cosine_alpha_bar_closed_form(T):
    s = 0.008
    ac = DiscreteSchedule(cosine_betas(T, s=s)).alphas_cumprod

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    for frac, expected in [(0.25, 0.84701), (0.5, 0.49384), (0.75, 0.14427)]:
        i = int(frac * T) - 1  # index i is t = i + 1
        assert ac[i].item() == pytest.approx(f(frac) / f(0.0), rel=1e-9)
        assert ac[i].item() == pytest.approx(expected, abs=5e-6)
    # Only the last beta reaches the 0.999 clip.
    betas = cosine_betas(T)
    assert (betas >= 0.999).sum().item() == 1 and betas[-1].item() == 0.999


def test_marginal_is_composition_of_forward_steps():
    """Iterating q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t) gives mean √ᾱ_t x_0, variance 1−ᾱ_t."""
    betas = linear_betas(1000)
    s = DiscreteSchedule(betas)
    x0 = torch.tensor([[0.7, -0.3]], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros(())
    for i, b in enumerate(betas):
        mean = (1 - b).sqrt() * mean
        var = (1 - b) * var + b
        if i in (0, 10, 500, 999):
            t = torch.tensor([i])
            q = s.q_mean_variance(x0, t)
            assert torch.allclose(q.mean, mean, rtol=1e-10)
            assert q.variance.item() == pytest.approx(var.item(), rel=1e-10)
    # q_sample is the reparameterised draw of that marginal.
    eps = torch.randn(1, 2, dtype=torch.float64)
    t = torch.tensor([300])
    xt = s.q_sample(x0, t, eps)
    assert torch.allclose(xt, s.alpha(t) * x0 + s.sigma(t) * eps)


def test_posterior_matches_bayes_rule():
    """q(x_{t−1}|x_t, x_0) ∝ q(x_t|x_{t−1}) q(x_{t−1}|x_0): product of two Gaussians in x_{t−1}."""
    betas = linear_betas(1000)
    s = DiscreteSchedule(betas)
    ac = s.alphas_cumprod
    x0 = torch.randn(5, 3, dtype=torch.float64)
    xt = torch.randn(5, 3, dtype=torch.float64)
    for i in (1, 2, 50, 999):
        t = torch.full((5,), i)
        b, a = betas[i], 1 - betas[i]
        precision = a / b + 1 / (1 - ac[i - 1])
        var = 1 / precision
        mean = var * (a.sqrt() * xt / b + ac[i - 1].sqrt() * x0 / (1 - ac[i - 1]))
        post = s.q_posterior(x0, xt, t)
        assert torch.allclose(post.mean, mean, rtol=1e-9, atol=1e-12)
        assert post.variance[0].item() == pytest.approx(var.item(), rel=1e-9)
        assert torch.allclose(post.log_variance, torch.log(post.variance))


def test_eps_x0_conversions_invert():
    s = DiscreteSchedule(linear_betas(1000))
    x0 = torch.randn(4, 2, dtype=torch.float64)
    eps = torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    xt = s.q_sample(x0, t, eps)
    assert torch.allclose(s.predict_x0_from_eps(xt, t, eps), x0, atol=1e-8)
    assert torch.allclose(s.predict_eps_from_x0(xt, t, x0), eps, atol=1e-8)


def test_fixed_variances():
    betas = linear_betas(1000)
    s = DiscreteSchedule(betas)
    large, small = s.log_variance("fixedlarge").exp(), s.log_variance("fixedsmall").exp()
    # DDPM code: fixedlarge = β_t except β̃_2 at t = 1; fixedsmall = β̃_t clipped at t = 1.
    assert torch.allclose(large[1:], betas[1:])
    assert large[0].item() == pytest.approx(s.posterior_variance[1].item())
    assert torch.allclose(small[1:], s.posterior_variance[1:])
    with pytest.raises(ValueError, match="fixedlarge"):
        s.log_variance("learned")


@pytest.mark.parametrize("kind", ["uniform", "quad", "even"])
def test_respacing_keeps_alpha_bar_subsequence(kind):
    s = DiscreteSchedule(cosine_betas(1000))
    tau = spaced_timesteps(1000, 50, kind)
    r = s.respace(tau)
    assert r.T == len(tau)
    assert torch.equal(r.timesteps, torch.tensor(tau))
    assert torch.allclose(r.alphas_cumprod, s.alphas_cumprod[tau], rtol=1e-12)
    assert torch.allclose(betas_from_alphas_cumprod(s.alphas_cumprod), s.betas, rtol=1e-9)
    # A respaced schedule's timesteps still point into the original (for the network).
    rr = r.respace([0, 5, 10])
    assert rr.timesteps.tolist() == [tau[0], tau[5], tau[10]]


def test_spaced_timesteps_definitions():
    assert spaced_timesteps(1000, 10, "uniform") == list(range(0, 1000, 100))
    quad = spaced_timesteps(1000, 10, "quad")
    assert quad == [int(v) for v in np.linspace(0, np.sqrt(800), 10) ** 2]
    assert spaced_timesteps(1000, 3, "even") == [0, 500, 999]
    with pytest.raises(ValueError, match="uniform"):
        spaced_timesteps(1000, 10, "log")
    with pytest.raises(ValueError):
        spaced_timesteps(10, 11)


def test_invalid_betas_are_rejected():
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        DiscreteSchedule(torch.tensor([0.1, 1.2]))
    with pytest.raises(ValueError, match="strictly increasing"):
        DiscreteSchedule(linear_betas(10)).respace([3, 2])
