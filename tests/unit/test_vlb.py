"""Variational-bound pieces against closed forms (DDPM eqs. 5, 13)."""

import math

import pytest
import torch

from diffzoo.objectives import discretized_gaussian_log_likelihood, normal_kl, prior_bpd, vlb_term_bpd
from diffzoo.parameterization import p_mean_variance
from diffzoo.schedules import DiscreteSchedule, linear_betas


def test_normal_kl_closed_form_and_monte_carlo():
    m1, lv1, m2, lv2 = (torch.tensor(v, dtype=torch.float64) for v in (0.3, math.log(0.5), -0.2, math.log(2.0)))
    kl = normal_kl(m1, lv1, m2, lv2).item()
    # KL = log(σ2/σ1) + (σ1² + (μ1−μ2)²)/(2σ2²) − 1/2
    assert kl == pytest.approx(0.5 * math.log(2.0 / 0.5) + (0.5 + 0.25) / 4 - 0.5, rel=1e-12)
    d1 = torch.distributions.Normal(m1, lv1.mul(0.5).exp())
    d2 = torch.distributions.Normal(m2, lv2.mul(0.5).exp())
    x = d1.sample((400000,))
    assert (d1.log_prob(x) - d2.log_prob(x)).mean().item() == pytest.approx(kl, abs=5e-3)
    assert normal_kl(m1, lv1, m1, lv1).item() == 0.0


@pytest.mark.parametrize("mean,log_scale", [(0.0, math.log(0.1)), (0.93, math.log(0.02)), (-0.5, math.log(3.0)), (1.0, math.log(1e-3))])
def test_discretized_gaussian_is_a_distribution_over_256_levels(mean, log_scale):
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    lp = discretized_gaussian_log_likelihood(levels, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64))
    assert torch.isfinite(lp).all()
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    # an interior bin has mass Φ(u) − Φ(l)
    d = torch.distributions.Normal(mean, math.exp(log_scale))
    k = 128
    expected = d.cdf(torch.tensor(levels[k].item() + 1 / 255)) - d.cdf(torch.tensor(levels[k].item() - 1 / 255))
    assert lp[k].exp().item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-12)


def test_prior_term_closed_form():
    s = DiscreteSchedule(linear_betas(1000))
    x0 = torch.rand(3, 1, 4, 4, dtype=torch.float64) * 2 - 1
    ac = s.alphas_cumprod[-1]
    kl = 0.5 * (ac * x0**2 + (1 - ac) - 1 - torch.log(1 - ac))
    assert torch.allclose(prior_bpd(s, x0), kl.flatten(1).mean(1) / math.log(2))
    # PAPERS §5d: L_T is about 2.9e-5 bits/dim for data in [-1, 1]
    assert prior_bpd(s, x0).max().item() < 1e-4


def test_vlb_term_is_zero_for_the_true_posterior_and_positive_otherwise():
    s = DiscreteSchedule(linear_betas(100))
    x0 = torch.rand(4, 1, 4, 4, dtype=torch.float64) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([1, 5, 50, 99])
    xt = s.q_sample(x0, t, eps)
    exact = p_mean_variance(s, xt, t, eps, "fixedsmall")
    assert vlb_term_bpd(s, x0, xt, t, exact).abs().max().item() < 1e-8
    wrong = p_mean_variance(s, xt, t, eps + 0.1, "fixedsmall")
    assert (vlb_term_bpd(s, x0, xt, t, wrong) > 0).all()
    # at t = 1 (index 0) the term is the decoder NLL, positive bits/dim
    t0 = torch.zeros(4, dtype=torch.long)
    dec = vlb_term_bpd(s, x0, s.q_sample(x0, t0, eps), t0, p_mean_variance(s, s.q_sample(x0, t0, eps), t0, eps, "fixedlarge"))
    assert (dec > 0).all()
