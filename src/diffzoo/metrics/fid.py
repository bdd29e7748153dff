"""Sample-quality statistics on feature vectors: Fréchet distance (FID), kernel distance (KID),
Inception Score (IS). Pure maths on tensors — no network, no images; float64 throughout.

The feature extractor (Inception for RGB images, a small classifier for digits / Fashion-MNIST)
is chosen elsewhere (:mod:`diffzoo.metrics.features`); these functions only see its outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "FeatureStats",
    "feature_statistics",
    "frechet_distance",
    "trace_sqrt_product",
    "polynomial_kernel",
    "mmd2_unbiased",
    "KIDResult",
    "kernel_inception_distance",
    "ISResult",
    "inception_score",
]


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of ``n`` feature vectors: ``mu`` float64 ``[d]``, ``sigma`` float64 ``[d, d]``."""

    mu: torch.Tensor
    sigma: torch.Tensor
    n: int


def feature_statistics(features: torch.Tensor) -> FeatureStats:
    """Sample mean and unbiased covariance (divisor ``n − 1``) of ``features`` ``[n, d]``, ``n ≥ 2``."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_statistics needs [n >= 2, d] features, got shape {tuple(features.shape)}")
    f = features.detach().to(torch.float64).cpu()
    mu = f.mean(0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return FeatureStats(mu=mu, sigma=sigma, n=int(f.shape[0]))


def _psd_sqrt(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix via its eigendecomposition (negative
    eigenvalues from round-off are clipped to 0)."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """``Tr((Σ₁Σ₂)^{1/2})`` for symmetric PSD ``Σ₁, Σ₂`` ``[d, d]`` (float64 scalar).

    ``Σ₁Σ₂`` is similar to the symmetric PSD ``M = Σ₁^{1/2} Σ₂ Σ₁^{1/2}`` (same eigenvalues), so the
    trace is ``Σᵢ √λᵢ(M)`` — computed with ``eigh`` on ``M``, which stays real and stable when the
    covariances are singular (fewer samples than dimensions), unlike ``sqrtm(Σ₁Σ₂)``.
    """
    s1 = _psd_sqrt(sigma1.to(torch.float64))
    m = s1 @ sigma2.to(torch.float64) @ s1
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between ``N(μ_a, Σ_a)`` and ``N(μ_b, Σ_b)`` (FID when the statistics are
    Inception pool features).

    Heusel et al. 2017, eq. 6 (Dowson & Landau 1982):
    ``d² = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})``.
    """
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"frechet_distance: feature dims differ ({a.mu.numel()} vs {b.mu.numel()})")
    diff = a.mu.to(torch.float64) - b.mu.to(torch.float64)
    value = diff @ diff + a.sigma.trace() + b.sigma.trace() - 2 * trace_sqrt_product(a.sigma, b.sigma)
    return float(value.clamp_min(0))


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> torch.Tensor:
    """``k(x, y) = (γ xᵀy + c)^degree`` with ``γ = 1/d`` by default (the KID kernel, Bińkowski et
    al. 2018, §4 "Kernel Inception Distance"). ``x`` ``[n, d]``, ``y`` ``[m, d]`` → ``[n, m]``."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of MMD² from kernel matrices ``k_xx`` ``[m, m]``, ``k_yy`` ``[n, n]``,
    ``k_xy`` ``[m, n]`` (Gretton et al. 2012, eq. 3, MMD²_u):
    ``1/(m(m−1)) Σ_{i≠j} k(xᵢ,xⱼ) + 1/(n(n−1)) Σ_{i≠j} k(yᵢ,yⱼ) − 2/(mn) Σ_{i,j} k(xᵢ,yⱼ)``."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"mmd2_unbiased needs at least 2 samples per set, got {m} and {n}")
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return xx + yy - 2 * k_xy.mean()


@dataclass(frozen=True)
class KIDResult:
    """KID over ``subsets`` random subsets of ``subset_size`` samples per set: mean and std of MMD²_u."""

    mean: float
    std: float
    subsets: int
    subset_size: int


def kernel_inception_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> KIDResult:
    """KID (Bińkowski et al. 2018, §4): the unbiased MMD² with the cubic polynomial kernel between
    features ``x`` ``[m, d]`` and ``y`` ``[n, d]``, averaged over ``subsets`` draws (without
    replacement within a draw) of ``min(subset_size, m, n)`` rows from each set.

    The subsets are drawn with a generator seeded by ``seed``, so the value is reproducible.
    """
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"kernel_inception_distance: feature dims differ ({x.shape[1]} vs {y.shape[1]})")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2 or subsets < 1:
        raise ValueError(f"KID needs subsets >= 1 and >= 2 samples per set, got subsets={subsets}, sizes {x.shape[0]}, {y.shape[0]}")
    x64, y64 = x.detach().to(torch.float64).cpu(), y.detach().to(torch.float64).cpu()
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        xs = x64[torch.randperm(x64.shape[0], generator=g)[:size]]
        ys = y64[torch.randperm(y64.shape[0], generator=g)[:size]]
        k = lambda a, b: polynomial_kernel(a, b, degree, gamma, coef0)  # noqa: E731
        values.append(mmd2_unbiased(k(xs, xs), k(ys, ys), k(xs, ys)))
    v = torch.stack(values)
    return KIDResult(mean=float(v.mean()), std=float(v.std(unbiased=False)), subsets=subsets, subset_size=size)


@dataclass(frozen=True)
class ISResult:
    """Inception Score over ``splits`` consecutive chunks: mean and std across chunks."""

    mean: float
    std: float
    splits: int


def inception_score(logits: torch.Tensor, splits: int = 10) -> ISResult:
    """Inception Score from classifier logits ``[n, K]`` (Salimans et al. 2016, §4):
    ``IS = exp(E_x KL(p(y|x) ‖ p(y)))`` with ``p(y)`` the mean of ``p(y|x)`` over the chunk;
    computed on ``splits`` consecutive chunks of (almost) equal size ``⌊(i+1)n/s⌋ − ⌊in/s⌋``.

    A set whose predictions all agree scores 1; ``K`` equally used, confident classes score ``K``.
    """
    n = logits.shape[0]
    if logits.ndim != 2 or not 1 <= splits <= n:
        raise ValueError(f"inception_score needs logits [n, K] and 1 <= splits <= n, got {tuple(logits.shape)}, splits={splits}")
    log_p = torch.log_softmax(logits.detach().to(torch.float64).cpu(), dim=1)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits: (i + 1) * n // splits]
        log_marginal = torch.logsumexp(chunk, dim=0) - math.log(chunk.shape[0])  # log p(y)
        kl = (chunk.exp() * (chunk - log_marginal)).sum(1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return ISResult(mean=float(s.mean()), std=float(s.std(unbiased=False)), splits=splits)
