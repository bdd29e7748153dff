"""Probability-flow ODE log-likelihood against exact Gaussian-mixture densities; bits/dim."""

import math

import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.likelihood import bits_per_dim, ode_log_likelihood, uniform_dequantize
from diffzoo.schedules.sde import SubVPSDE, VESDE, VPSDE

# PAPERS §10d: a 1-D two-Gaussian mixture with exact score.
MIX_1D = GaussianMixture([0.4, 0.6], [[-1.0], [1.0]], [0.3, 0.5])
MIX_2D = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [[[0.09, 0.05], [0.05, 0.36]], [[0.25, -0.04], [-0.04, 0.16]]])


def exact_score(sde, gm):
    def score_fn(x, t):
        return gm.score(x, sde.alpha(t), sde.sigma(t)).to(x.dtype)

    return score_fn


def exact_log_p(sde, gm, x, t):
    tt = torch.tensor([t], dtype=torch.float64)
    return gm.log_prob(x, sde.alpha(tt).item(), sde.sigma(tt).item())


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE, VESDE])
def test_ode_likelihood_is_exact_with_the_exact_prior(cls):
    """With the exact score and the exact p_1 as prior, the ODE gives log p_eps(x) to solver
    accuracy (~1e-5 nats at rtol = atol = 1e-6)."""
    sde = cls()
    x = torch.linspace(-2.5, 2.5, 21, dtype=torch.float64)[:, None]
    eps = 1e-5
    out = ode_log_likelihood(exact_score(sde, MIX_1D), sde, x, hutchinson="exact", rtol=1e-6, atol=1e-6, eps=eps,
                             prior_logp=lambda z: exact_log_p(sde, MIX_1D, z, 1.0))
    torch.testing.assert_close(out.log_likelihood, exact_log_p(sde, MIX_1D, x, eps), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.log_likelihood, out.prior_logp + out.delta_logp)
    assert out.log_likelihood.shape == (21,) and out.nfe > 10


def test_ode_likelihood_with_standard_normal_prior_is_off_by_the_prior_mismatch_only():
    """PAPERS §10d: with the N(0, 1) prior of the VP SDE the error on data from the mixture is
    ≤ ~5e-3 nats — the mismatch between p_1 and N(0, 1) (mean coefficient 6.57e-3 at t = 1)."""
    sde = VPSDE()
    x = MIX_1D.sample(300, torch.Generator().manual_seed(0)).double()
    eps = 1e-5
    exact = exact_log_p(sde, MIX_1D, x, eps)
    out = ode_log_likelihood(exact_score(sde, MIX_1D), sde, x, hutchinson="exact", eps=eps)
    err = (out.log_likelihood - exact).abs()
    assert err.max() < 5e-3
    # and that error is the prior's: the same solve with the exact p_1 has none of it
    ref = ode_log_likelihood(exact_score(sde, MIX_1D), sde, x, hutchinson="exact", eps=eps,
                             prior_logp=lambda z: exact_log_p(sde, MIX_1D, z, 1.0))
    assert (ref.log_likelihood - exact).abs().max() < 3e-4


def test_hutchinson_estimators_are_unbiased():
    """Rademacher and Gaussian probes: the mean over many probes of log p equals the exact-trace
    value (within 4 standard errors); the estimate is random, and Rademacher's variance is the
    smaller one (for a fixed probe the integral is a quadratic form vᵀAv, and
    Var_Rad = 2Σ_{i≠j}A_ij² ≤ Var_Gauss = 2‖A‖_F² for symmetric A)."""
    sde = VPSDE()
    score = exact_score(sde, MIX_2D)
    points = torch.tensor([[-1.0, 0.4], [0.3, 0.0], [1.6, -0.3]], dtype=torch.float64)
    exact = ode_log_likelihood(score, sde, points, hutchinson="exact").log_likelihood
    reps = 1500
    stds = {}
    for kind, seed in (("rademacher", 1), ("gaussian", 2)):
        est = ode_log_likelihood(score, sde, points.repeat_interleave(reps, 0), hutchinson=kind,
                                 generator=torch.Generator().manual_seed(seed)).log_likelihood.reshape(3, reps)
        mean, std = est.mean(1), est.std(1)
        assert torch.all(std > 1e-3), kind  # a real estimator, not the exact trace
        assert torch.all((mean - exact).abs() < 4 * std / math.sqrt(reps) + 1e-4), (kind, mean, exact)
        stds[kind] = std
    assert torch.all(stds["rademacher"] < stds["gaussian"])


def test_ode_likelihood_validates_arguments():
    sde = VPSDE()
    x = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="allowed.*rademacher"):
        ode_log_likelihood(exact_score(sde, MIX_1D), sde, x, hutchinson="skilling")
    with pytest.raises(ValueError, match="allowed.*RK45"):
        ode_log_likelihood(exact_score(sde, MIX_1D), sde, x, method="euler")


# ---------------------------------------------------------------------- bits/dim
def test_bits_per_dim_offsets():
    """Offsets of uniform dequantisation with 256 levels: 7 bits on [−1, 1], 8 on [0, 1]."""
    zero = torch.zeros(3)
    torch.testing.assert_close(bits_per_dim(zero, 10), torch.full((3,), 7.0))
    torch.testing.assert_close(bits_per_dim(zero, 10, data_range=(0.0, 1.0)), torch.full((3,), 8.0))
    # nats → bits: D·ln 2 nats of NLL is one extra bit per dimension
    torch.testing.assert_close(bits_per_dim(torch.tensor([5 * math.log(2)]), 5), torch.tensor([8.0]))


@pytest.mark.parametrize("data_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_bits_per_dim_of_uniform_density_is_eight_bits(data_range):
    """The uniform density on the data range is the uniform distribution over 256 levels after
    dequantisation: exactly 8 bits/dim, whatever the range."""
    lo, hi = data_range
    D = 3 * 4 * 4
    nll = torch.tensor([D * math.log(hi - lo)])  # −log of the density 1/(hi − lo)^D
    torch.testing.assert_close(bits_per_dim(nll, D, data_range=data_range), torch.tensor([8.0]))


def test_uniform_dequantize_stays_in_its_bin():
    k = torch.randint(0, 256, (64, 3, 2, 2))
    x = k / 255 * 2 - 1  # quantised data in [−1, 1]
    y = uniform_dequantize(x, torch.Generator().manual_seed(0))
    cell = (y + 1) / 2 * 256  # in [k, k + 1)
    assert torch.all(cell.floor() == k)
    u = cell - k
    assert abs(u.mean().item() - 0.5) < 0.03 and abs(u.var().item() - 1 / 12) < 0.01
