"""Sohl-Dickstein et al. 2015: the constant-fraction β schedule and the bound K in closed form."""

import math

import pytest
import torch

from diffzoo.schedules import DiscreteSchedule, extract
from diffzoo.schedules.dpm2015 import (
    MAX_BETA_MARGIN,
    DPM2015Schedule,
    constant_fraction_signal_left,
    dpm2015_betas,
    dpm2015_bound_bits_vs_gaussian,
    dpm2015_entropies,
    dpm2015_reverse_moments,
    gaussian_entropy,
    gaussian_kl,
)


# ------------------------------------------------------------------ β schedule
@pytest.mark.parametrize("T", [3, 40, 1000])
def test_signal_left_closed_form(T):
    """∏(1 − β̂_t) for β̂ = 1/linspace(T, 2, T) equals the Gamma-function closed form; it is
    not 1/T (the linspace is not integer-spaced) but approaches it as T grows."""
    base = dpm2015_betas(T, step1_beta=0.0, min_beta=0.0) / (1 - MAX_BETA_MARGIN)
    prod = torch.prod(1 - base).item()
    assert prod == pytest.approx(constant_fraction_signal_left(T), rel=1e-9)
    assert 0.5 / T < prod < 1 / T
    assert abs(prod * T - 1) < 2.0 / math.sqrt(T)


def test_integer_spacing_would_leave_exactly_one_over_T():
    """The textbook identity behind the schedule: ∏_{k=2..T} (k−1)/k = 1/T, i.e. each step
    removes 1/T of the original signal variance."""
    T = 40
    v = torch.arange(T, 1, -1, dtype=torch.float64)  # T, T−1, …, 2
    abar = torch.cumprod(1 - 1 / v, 0)
    assert abar[-1].item() == pytest.approx(1 / T, rel=1e-12)
    torch.testing.assert_close(abar[:-1] - abar[1:], torch.full((T - 2,), 1 / T, dtype=torch.float64))


def test_betas_floors_and_range():
    T = 40
    b = dpm2015_betas(T)
    assert b.dtype == torch.float64 and b.shape == (T,)
    assert b[0].item() > 1e-3  # step1_beta: the smallest variance the model may have
    assert bool((b >= 1e-6).all()) and bool((b <= 1 - MAX_BETA_MARGIN).all())
    assert b[-1].item() == pytest.approx(0.5, rel=1e-4)  # β̂_T = 1/2
    assert bool((b[2:] > b[1:-1]).all())  # increasing after the step1_beta-raised first step
    with pytest.raises(ValueError, match="T must be"):
        dpm2015_betas(1)


# ------------------------------------------------------------------ the bound
def expected_kl_isotropic_data(schedule: DiscreteSchedule, mu_shift: float = 0.0) -> torch.Tensor:
    """E[KL(q(x_{t−1}|x_t, x_0) ‖ p(x_{t−1}|x_t))] per t, exactly, for x_0 ~ N(0, 1) and the
    kernel p = N(√(1−β_t) x_t + mu_shift √β_t, β_t). μ̃ − μ_p is linear in (x_0, x_t) with
    Var x_0 = Var x_t = 1 and Cov = √ᾱ_t."""
    b, abar = schedule.betas, schedule.alphas_cumprod
    a = schedule.posterior_mean_coef1
    c = schedule.posterior_mean_coef2 - torch.sqrt(1 - b)
    second_moment = a**2 + 2 * a * c * abar.sqrt() + c**2 + mu_shift**2 * b
    var_q = schedule.posterior_variance
    return 0.5 * (torch.log(b / var_q) + (var_q + second_moment) / b - 1)


def test_bound_is_zero_in_the_isotropic_debug_setting():
    """SD15 code's DEBUG setting (β_rev = β_fwd, μ_coeff = 0) is the exact reverse of the
    forward chain when the data are N(0, I); then K equals the Gaussian's log-likelihood and the
    bound relative to it is 0 — exactly, term by term."""
    for T in (2, 40, 1000):
        schedule = DiscreteSchedule(dpm2015_betas(T))
        kl_sum = expected_kl_isotropic_data(schedule)[1:].sum()  # t = 2..T
        assert kl_sum.item() > 0.1  # the terms are not individually zero
        assert dpm2015_bound_bits_vs_gaussian(kl_sum, schedule.betas).item() == pytest.approx(0.0, abs=1e-10)


def test_monte_carlo_bound_with_the_module_kernels():
    """The per-sample path a trainer uses — t ~ U{2..T}, q_sample, q_posterior, the SD15 reverse
    kernel, gaussian_kl, ×(T − 1) — averages to 0 bits in the debug setting and to the closed-form
    −(T − 1)·μ²/2 nats when μ_coeff = μ."""
    T, B, D = 40, 4096, 2
    g = torch.Generator().manual_seed(0)
    schedule = DiscreteSchedule(dpm2015_betas(T))
    for mu in (0.0, 0.5):
        x0 = torch.randn(B, D, dtype=torch.float64, generator=g)
        t = torch.randint(1, T, (B,), generator=g)  # index 1..T−1 = paper's t = 2..T
        x_t = schedule.q_sample(x0, t, torch.randn(B, D, dtype=torch.float64, generator=g))
        post = schedule.q_posterior(x0, x_t, t)
        beta_t = extract(schedule.betas, t, x_t)
        p = dpm2015_reverse_moments(x_t, torch.full_like(x_t, mu), torch.zeros_like(x_t), beta_t, T)
        if mu == 0.0:
            torch.testing.assert_close(p.variance, beta_t.expand_as(x_t))  # β_coeff = 0 ⇒ β_rev = β_fwd
        kl = gaussian_kl(post.mean, post.variance.expand_as(x_t), p.mean, p.variance)  # [B, D]
        bits = dpm2015_bound_bits_vs_gaussian((T - 1) * kl, schedule.betas)
        exact = -(T - 1) * mu**2 / 2 / math.log(2)
        se = bits.std().item() / math.sqrt(B * D)
        assert abs(bits.mean().item() - exact) < 5 * se


def test_gaussian_kl_and_entropy_closed_forms():
    kl = gaussian_kl(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(0.0), torch.tensor(0.5))
    assert kl.item() == pytest.approx(0.5 * math.log(0.25) + (2.0 + 1.0) / 1.0 - 0.5)
    assert gaussian_kl(torch.tensor(0.3), torch.tensor(0.7), torch.tensor(0.3), torch.tensor(0.7)).item() == 0.0
    # entropy of N(0, σ²) from a fine quadrature of −∫ p log p
    s2 = 0.3
    x = torch.linspace(-8, 8, 200001, dtype=torch.float64)
    p = torch.exp(-0.5 * x**2 / s2) / math.sqrt(2 * math.pi * s2)
    h = -(p * torch.log(p)).sum() * (x[1] - x[0])
    assert gaussian_entropy(s2).item() == pytest.approx(h.item(), rel=1e-8)
    ent = dpm2015_entropies(dpm2015_betas(40))
    assert ent.h_prior.item() == pytest.approx(0.5 * (1 + math.log(2 * math.pi)))


# ------------------------------------------------------------------ the learned β schedule
def test_learned_betas_start_at_the_constant_fraction_schedule():
    for T in (2, 40, 1000):
        schedule = DPM2015Schedule(T, learn_betas=True)
        torch.testing.assert_close(schedule.betas(), dpm2015_betas(T), rtol=1e-12, atol=1e-15)
        assert [n for n, _ in schedule.named_parameters()] == ["beta_perturb"]
    assert list(DPM2015Schedule(40, learn_betas=False).parameters()) == []  # fixed: nothing to train


def test_learned_betas_stay_in_range_for_any_coefficients():
    """β_t ∈ (β_min,t, 1 − 10⁻⁵) however large the perturbation; β_1 never falls below step1_beta."""
    schedule = DPM2015Schedule(40, step1_beta=1e-3, min_beta=1e-6, learn_betas=True)
    for scale in (1.0, 30.0, 1e3):
        with torch.no_grad():
            schedule.beta_perturb.copy_(scale * torch.randn(10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
        b = schedule.betas()
        assert bool(((b >= schedule.beta_floor) & (b <= 1 - 1e-5)).all())
        assert b[0].item() >= 1e-3 + 1e-6
    assert b.min().item() < 1e-5 and b.max().item() > 0.99  # the extremes were actually reached


def test_forward_moments_match_the_ddpm_tables_for_perturbed_betas():
    """q_sample and q_posterior of the learned schedule equal DiscreteSchedule's closed forms
    (DDPM eqs. 4, 6–7) for the same, non-trivial β table."""
    schedule = DPM2015Schedule(12, learn_betas=True)
    with torch.no_grad():
        schedule.beta_perturb.copy_(torch.linspace(-2, 2, 10, dtype=torch.float64))
    reference = DiscreteSchedule(schedule.betas().detach())
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 12, 3, dtype=torch.float64, generator=g)
    t = torch.arange(12).clamp(min=1)
    x_t = schedule.q_sample(x0, t, noise)
    torch.testing.assert_close(x_t, reference.q_sample(x0, t, noise))
    post, ref = schedule.q_posterior(x0, x_t, t), reference.q_posterior(x0, x_t, t)
    torch.testing.assert_close(post.mean, ref.mean)
    torch.testing.assert_close(post.variance, ref.variance)


def test_gradient_of_the_entropy_terms_reaches_the_beta_coefficients():
    """−H_q(x_1|x_0) = −½ log(2πe β_1) per dimension (SD15 eq. 14): its gradient w.r.t. the
    coefficients is −½ ∂log β_1/∂c, computed here by hand from the sigmoid parameterisation."""
    schedule = DPM2015Schedule(40, learn_betas=True)
    h = dpm2015_entropies(schedule.betas())
    (-h.h_first_step).backward()
    b1, floor = schedule.betas()[0].item(), schedule.beta_floor[0].item()
    s = (b1 - floor) / (1 - floor - 1e-5)  # sigmoid(z_1)
    expected = -0.5 / b1 * (1 - floor - 1e-5) * s * (1 - s) * schedule.basis[:, 0]
    torch.testing.assert_close(schedule.beta_perturb.grad, expected)
