"""Metrics for low-dimensional (toy 2-D) samples: sliced Wasserstein distance and MMD to held-out
data, and the exact log-likelihood of samples under a known density."""

from __future__ import annotations

import math
from typing import Callable

import torch

from .fid import mmd2_unbiased

__all__ = ["sliced_wasserstein", "gaussian_kernel", "mmd_rbf", "mean_log_likelihood"]


def _quantiles(sorted_proj: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Empirical quantile function of each column of ``sorted_proj`` ``[n, L]`` at ``levels`` ``[q]``:
    the value of order statistic ``⌈u·n⌉`` (the inverse of the empirical CDF)."""
    n = sorted_proj.shape[0]
    idx = (levels * n).ceil().long().clamp(1, n) - 1
    return sorted_proj[idx]


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, n_projections: int = 256, p: int = 2, generator: torch.Generator | None = None
) -> float:
    """Sliced Wasserstein distance ``SW_p(x, y) = (E_θ W_p^p(θᵀx, θᵀy))^{1/p}`` between point sets
    ``x`` ``[m, D]`` and ``y`` ``[n, D]``, θ uniform on the unit sphere (Rabin et al. 2011, §3;
    Bonneel et al. 2015, §2), estimated with ``n_projections`` directions drawn with ``generator``.

    Each 1-D distance uses the quantile form ``W_p^p = ∫₀¹ |F⁻¹(u) − G⁻¹(u)|^p du`` (on the real
    line the monotone coupling is optimal; Peyré & Cuturi 2019, §2.6), evaluated exactly on the
    merged breakpoints of the two empirical CDFs, so ``m ≠ n`` is fine. Same-size sets reduce to
    matching sorted projections.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"sliced_wasserstein needs [m, D] and [n, D] points, got {tuple(x.shape)} and {tuple(y.shape)}")
    x64, y64 = x.detach().to(torch.float64).cpu(), y.detach().to(torch.float64).cpu()
    theta = torch.randn(n_projections, x.shape[1], dtype=torch.float64, generator=generator)
    theta = theta / theta.norm(dim=1, keepdim=True)
    px, py = (x64 @ theta.T).sort(0).values, (y64 @ theta.T).sort(0).values  # [m, L], [n, L]
    m, n = px.shape[0], py.shape[0]
    # breakpoints of both step functions F⁻¹, G⁻¹ on (0, 1]; both are constant between them
    grid = torch.cat([torch.arange(1, m + 1, dtype=torch.float64) / m, torch.arange(1, n + 1, dtype=torch.float64) / n])
    grid = grid.unique().sort().values
    widths = torch.diff(grid, prepend=torch.zeros(1, dtype=torch.float64))
    u = grid - widths / 2  # one point inside each interval
    wpp = (widths[:, None] * (_quantiles(px, u) - _quantiles(py, u)).abs() ** p).sum(0)  # W_p^p per θ
    return float(wpp.mean() ** (1.0 / p))


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``k(x, y) = exp(−‖x − y‖² / (2ℓ²))`` for ``x`` ``[m, D]``, ``y`` ``[n, D]`` → ``[m, n]``."""
    return torch.exp(-torch.cdist(x, y).pow(2) / (2 * bandwidth**2))


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with the Gaussian kernel of width ``bandwidth``
    between samples ``x`` ``[m, D]`` and ``y`` ``[n, D]``. Can be slightly negative when the two
    distributions are equal."""
    x64, y64 = x.detach().to(torch.float64).cpu(), y.detach().to(torch.float64).cpu()
    k = lambda a, b: gaussian_kernel(a, b, bandwidth)  # noqa: E731
    return float(mmd2_unbiased(k(x64, x64), k(y64, y64), k(x64, y64)))


def mean_log_likelihood(samples: torch.Tensor, log_prob: Callable[[torch.Tensor], torch.Tensor], chunk: int = 4096) -> float:
    """``(1/n) Σᵢ log p(xᵢ)`` in nats of samples ``[n, D]`` under a known density ``log_prob``
    (e.g. a toy distribution's exact ``log_prob``). Non-finite values (a sample where ``p = 0``)
    are kept: the mean is then ``−inf`` and says so."""
    values = [log_prob(samples[i: i + chunk]).to(torch.float64).cpu() for i in range(0, samples.shape[0], chunk)]
    out = float(torch.cat(values).mean())
    return out if not math.isnan(out) else -math.inf
