"""FID / KID / IS arithmetic against closed forms, and the three back-ends against each other on
the same features."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from diffzoo.metrics.backends import BACKENDS, get_backend
from diffzoo.metrics.fid import (
    FeatureStats,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
    trace_sqrt_product,
)
from diffzoo.metrics.reference import ReferenceStats, content_hash


def _random_spd(d, g, rank=None):
    a = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return a @ a.T + (0 if rank else 0.1) * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    # Commuting covariances: Tr((Σ₁Σ₂)^{1/2}) = Σ √(aᵢbᵢ), so d² = ‖Δμ‖² + Σ (√aᵢ − √bᵢ)².
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    a, b = torch.rand(6, generator=g, dtype=torch.float64) + 0.1, torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    got = frechet_distance(FeatureStats(mu1, torch.diag(a), 10), FeatureStats(mu2, torch.diag(b), 10))
    assert got == pytest.approx(expected, rel=1e-10)


def test_trace_sqrt_product_matches_scipy_sqrtm_for_full_covariances():
    g = torch.Generator().manual_seed(1)
    s1, s2 = _random_spd(8, g), _random_spd(8, g)
    expected = np.trace(scipy.linalg.sqrtm((s1 @ s2).numpy())).real
    assert float(trace_sqrt_product(s1, s2)) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_symmetric_and_zero_on_itself_with_singular_covariances():
    """5 samples in 16 dimensions: rank-4 covariances, where the square root is ill-conditioned.

    The maths guarantees symmetry and a zero self-distance; what floating point guarantees is set by
    the conditioning, not by one machine's BLAS (a 1e-9 relative bound held on one and failed on
    another): ``eigh`` returns each eigenvalue λ of ``Σ_a^{1/2} Σ_b Σ_a^{1/2}`` within ``δ ≈ d ε ‖Σ_a‖ ‖Σ_b‖``,
    and where λ ≈ 0 its square root moves by up to ``√δ``; d of them, twice in the formula, for either
    order: ``|d(a, b) − d(b, a)| ≤ 4 d √(d ε ‖Σ_a‖ ‖Σ_b‖)`` (≈ 2e-5 here, against d ≈ 31)."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g) + 0.5
    sx, sy = feature_statistics(x), feature_statistics(y)
    d, eps = 16, torch.finfo(torch.float64).eps

    def bound(a, b):
        na, nb = (float(torch.linalg.matrix_norm(s.sigma, 2)) for s in (a, b))
        return 4 * d * math.sqrt(d * eps * na * nb)

    assert frechet_distance(sx, sx) == pytest.approx(0.0, abs=bound(sx, sx))
    assert frechet_distance(sx, sy) == pytest.approx(frechet_distance(sy, sx), rel=0, abs=bound(sx, sy))
    assert frechet_distance(sx, sy) > 1000 * bound(sx, sy)  # the bound is far below the value it guards


def test_sample_frechet_distance_converges_to_the_gaussian_value():
    g = torch.Generator().manual_seed(3)
    d, n = 3, 200_000
    s1, s2 = _random_spd(d, g), _random_spd(d, g)
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    x = mu1 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    y = mu2 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    exact = frechet_distance(FeatureStats(mu1, s1, n), FeatureStats(mu2, s2, n))
    assert frechet_distance(feature_statistics(x), feature_statistics(y)) == pytest.approx(exact, rel=0.02)


def test_feature_statistics_is_mean_and_unbiased_covariance():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    s = feature_statistics(x)
    assert torch.allclose(s.mu, x.mean(0)) and torch.allclose(s.sigma, torch.cov(x.T)) and s.n == 50


def test_mmd2_unbiased_matches_its_definition():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(9, 3, generator=g, dtype=torch.float64)
    k = lambda a, b: float(polynomial_kernel(a[None], b[None])[0, 0])  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    got = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
    assert float(got) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_with_a_linear_kernel_is_the_squared_mean_difference():
    # For k(x, y) = γ xᵀy + c the MMD² is γ‖μ_x − μ_y‖², and MMD²_u is unbiased for it.
    g = torch.Generator().manual_seed(6)
    shift = torch.tensor([1.0, 0.0, -2.0, 0.5])
    x, y = torch.randn(4000, 4, generator=g), torch.randn(4000, 4, generator=g) + shift
    r = kernel_inception_distance(x, y, subsets=20, subset_size=2000, degree=1, seed=0)
    assert r.mean == pytest.approx(float(shift.pow(2).sum()) / 4, rel=0.05)
    assert r.subset_size == 2000 and r.subsets == 20


def test_kid_of_two_samples_of_one_distribution_is_near_zero():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(1000, 8, generator=g), torch.randn(1000, 8, generator=g)
    far = kernel_inception_distance(x, y + 1.0, subsets=10, subset_size=500)
    near = kernel_inception_distance(x, y, subsets=10, subset_size=500)
    assert abs(near.mean) < 0.05 * far.mean


def test_inception_score_closed_forms():
    # identical predictions → IS = 1; K equally used, certain classes → IS = K
    assert inception_score(torch.randn(1, 7).repeat(40, 1), splits=4).mean == pytest.approx(1.0, abs=1e-12)
    K = 5
    certain = 60.0 * torch.eye(K).repeat(8, 1)
    assert inception_score(certain, splits=1).mean == pytest.approx(K, rel=1e-9)
    # two classes, p(y|x) = (q, 1−q) for half, (1−q, q) for the other: IS = 2·exp(−H(q))
    q = 0.8
    logits = torch.tensor([[math.log(q), math.log(1 - q)], [math.log(1 - q), math.log(q)]], dtype=torch.float64).repeat(10, 1)
    entropy = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert inception_score(logits, splits=1).mean == pytest.approx(2 * math.exp(-entropy), rel=1e-9)
    with pytest.raises(ValueError, match="splits"):
        inception_score(logits, splits=0)


def _reference(features: torch.Tensor) -> ReferenceStats:
    return ReferenceStats(features=features, stats=feature_statistics(features), key="test", content_hash=content_hash(features),
                          split="train", n=len(features), resize="none", extractor="test")


@pytest.fixture(scope="module")
def feature_sets():
    g = torch.Generator().manual_seed(8)
    ref = torch.randn(400, 12, generator=g).exp()  # skewed, non-Gaussian, like ReLU features
    gen = (torch.randn(400, 12, generator=g) * 1.2 + 0.3).exp()
    logits = torch.randn(400, 10, generator=g) * 3
    return gen, _reference(ref), logits


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_on_the_same_features(feature_sets, backend):
    gen, ref, logits = feature_sets
    reference = get_backend("diffzoo")
    b = get_backend(backend)
    assert b.fid(gen, ref) == pytest.approx(reference.fid(gen, ref), rel=1e-6)
    assert b.fid(ref.features, ref) == pytest.approx(0.0, abs=1e-6)
    # with subsets as large as both sets, every subset is the whole set: KID is exact and equal
    assert b.kid(gen, ref, subsets=2, subset_size=400, seed=0).mean == pytest.approx(
        reference.kid(gen, ref, subsets=2, subset_size=400, seed=0).mean, rel=1e-6)
    assert b.inception_score(logits, splits=1).mean == pytest.approx(reference.inception_score(logits, splits=1).mean, rel=1e-6)


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="torch-fidelity.*torchmetrics.*diffzoo"):
        get_backend("clean-fid")
