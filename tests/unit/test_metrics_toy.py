"""Toy 2-D metrics against closed forms: sliced Wasserstein between Gaussians, Gaussian-kernel MMD
between Gaussians, and the mean log-likelihood of a Gaussian's own samples (minus its entropy)."""

import math

import pytest
import torch

from diffzoo.data import GaussianMixture
from diffzoo.metrics.toy import mean_log_likelihood, mmd_rbf, sliced_wasserstein


def test_sliced_wasserstein_of_shifted_gaussians():
    # θᵀx ~ N(0, 1), θᵀy ~ N(θᵀm, 1): W₂² = (θᵀm)², and E_θ (θᵀm)² = ‖m‖²/D for θ uniform on the sphere.
    g = torch.Generator().manual_seed(0)
    m = torch.tensor([3.0, 0.0])
    x, y = torch.randn(20000, 2, generator=g), torch.randn(20000, 2, generator=g) + m
    sw = sliced_wasserstein(x, y, n_projections=500, generator=torch.Generator().manual_seed(1))
    assert sw == pytest.approx(math.sqrt(9.0 / 2), rel=0.03)


def test_sliced_wasserstein_is_zero_between_equal_empirical_measures_of_different_sizes():
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(2))
    y = torch.cat([x, x.flip(0)])  # the same empirical distribution with 200 points
    assert sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3)) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(x, x + 1.0, generator=torch.Generator().manual_seed(3)) > 0.5


def _expected_kernel(s1, s2, delta2, ell, d):
    # E k(X, Y) for X ~ N(μ₁, s₁²I), Y ~ N(μ₂, s₂²I), k = exp(−‖x−y‖²/(2ℓ²)): X − Y ~ N(Δ, (s₁² + s₂²)I)
    v = ell**2 + s1**2 + s2**2
    return (ell**2 / v) ** (d / 2) * math.exp(-delta2 / (2 * v))


def test_mmd_between_gaussians_matches_closed_form():
    g = torch.Generator().manual_seed(4)
    d, s1, s2, ell = 2, 1.0, 0.5, 1.0
    shift = torch.tensor([1.0, 0.5])
    x = torch.randn(3000, d, generator=g) * s1
    y = torch.randn(3000, d, generator=g) * s2 + shift
    exact = (_expected_kernel(s1, s1, 0, ell, d) + _expected_kernel(s2, s2, 0, ell, d)
             - 2 * _expected_kernel(s1, s2, float(shift.pow(2).sum()), ell, d))
    assert mmd_rbf(x, y, bandwidth=ell) == pytest.approx(exact, rel=0.05)
    assert abs(mmd_rbf(x, torch.randn(3000, d, generator=g) * s1, bandwidth=ell)) < 0.05 * exact


def test_mean_log_likelihood_of_own_samples_is_minus_entropy():
    sigma = 0.7
    gm = GaussianMixture([1.0], [[0.5, -1.0]], sigma)
    x = gm.sample(50000, generator=torch.Generator().manual_seed(5))
    entropy = math.log(2 * math.pi * math.e * sigma**2)  # D/2 · log(2πeσ²) with D = 2
    assert mean_log_likelihood(x, gm.log_prob) == pytest.approx(-entropy, abs=0.02)
