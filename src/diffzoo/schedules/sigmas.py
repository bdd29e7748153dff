"""Noise-level grids for score models: NCSN's geometric σ sequence and NCSNv2's rules for it.

NCSN (Song & Ermon 2019, §3.1): ``{σ_i}`` is a geometric sequence from σ_1 to σ_L (§4: σ_1 = 1,
σ_L = 0.01, L = 10).

NCSNv2 (Song & Ermon 2020, §3) derives its settings from the data and the sampling budget:

* Technique 1 (§3.1): σ_1 = the maximum Euclidean distance between two training points.
* Technique 2 (§3.2, Proposition 2): the common ratio γ = σ_{i−1}/σ_i is chosen so that
  ``Φ(√(2D)(γ − 1) + 3γ) − Φ(√(2D)(γ − 1) − 3γ) ≈ 0.5`` (D = data dimension).
* Technique 4 (§3.4, Proposition 3): with α_i = ε σ_i²/σ_L² and T Langevin steps per level under
  the code's convention ``x ← x + α ∇log p + √(2α) z``, a sample that starts at level σ_{i−1}
  of a point mass ends with variance ratio
  ``s_T²/σ_i² = (1 − ε/σ_L²)^{2T} (γ² − 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²)) + 2ε/(σ_L² − σ_L²(1 − ε/σ_L²)²)``;
  choose T as large as the budget allows, then ε to bring that ratio as close to 1 as possible.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "geometric_sigmas",
    "ncsnv2_sigma_max",
    "ncsnv2_gamma_rule_value",
    "ncsnv2_solve_gamma",
    "ncsnv2_num_levels",
    "ncsnv2_step_ratio",
    "OptimalStep",
    "ncsnv2_optimal_eps",
]


def geometric_sigmas(sigma_max: float, sigma_min: float, L: int) -> torch.Tensor:
    """NCSN's noise levels: ``σ_i = exp(linspace(log σ_max, log σ_min, L))_i`` (NCSN §3.1).

    Returns: float64 ``[L]``, strictly decreasing, ratio ``γ = (σ_max/σ_min)^{1/(L−1)}``.
    """
    if not (sigma_max > sigma_min > 0) or not isinstance(L, int) or L < 2:
        raise ValueError(
            f"geometric_sigmas: need sigma_max > sigma_min > 0 and an integer L >= 2, "
            f"got {sigma_max}, {sigma_min}, {L!r}"
        )
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), L, dtype=torch.float64))


@torch.no_grad()
def ncsnv2_sigma_max(data: torch.Tensor, chunk_size: int = 1024) -> float:
    """Technique 1 (NCSNv2 §3.1): ``σ_1 = max_{i≠j} ‖x_i − x_j‖₂`` over the training data.

    ``data``: ``[N, …]`` (flattened per sample). Exact, in float64, in O(N²) time and
    O(chunk_size · N) memory.
    """
    x = data.reshape(data.shape[0], -1).to(torch.float64)
    if x.shape[0] < 2:
        raise ValueError("ncsnv2_sigma_max: need at least two data points")
    best = 0.0
    for start in range(0, x.shape[0], chunk_size):
        best = max(best, float(torch.cdist(x[start : start + chunk_size], x).max()))
    return best


def _std_normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def ncsnv2_gamma_rule_value(gamma: float, D: int) -> float:
    """Technique 2 (NCSNv2 §3.2): ``Φ(√(2D)(γ − 1) + 3γ) − Φ(√(2D)(γ − 1) − 3γ)``.

    For data at one point, the (approximate, ``‖x‖/σ ≈ N(√D, ½)``) probability that a draw from
    ``N(0, σ_i² I)`` lands in the 3-sd shell ``|‖x‖ − σ_{i−1}√D| < 3σ_{i−1}/√2`` where
    ``N(0, σ_{i−1}² I)`` concentrates, with ``σ_{i−1} = γσ_i``; NCSNv2 wants ≈ 0.5.
    """
    c = math.sqrt(2.0 * D) * (gamma - 1.0)
    return _std_normal_cdf(c + 3.0 * gamma) - _std_normal_cdf(c - 3.0 * gamma)


def ncsnv2_solve_gamma(D: int, target: float = 0.5) -> float:
    """The ratio γ > 1 with ``ncsnv2_gamma_rule_value(γ, D) = target`` (Technique 2).

    The rule value falls from Φ(3) − Φ(−3) ≈ 0.997 at γ = 1 towards 0; the root is found by
    bisection to machine precision.
    """
    if not 0.0 < target < _std_normal_cdf(3.0) - _std_normal_cdf(-3.0):
        raise ValueError(f"ncsnv2_solve_gamma: target must lie in (0, 0.9973), got {target}")
    lo, hi = 1.0, 2.0
    while ncsnv2_gamma_rule_value(hi, D) > target:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if ncsnv2_gamma_rule_value(mid, D) > target else (lo, mid)
    return 0.5 * (lo + hi)


def ncsnv2_num_levels(sigma_max: float, sigma_min: float, gamma: float) -> int:
    """Smallest L whose geometric grid from σ_max to σ_min has ratio ≤ γ:
    ``L = 1 + ⌈log(σ_max/σ_min) / log γ⌉``."""
    if not (sigma_max > sigma_min > 0 and gamma > 1):
        raise ValueError("ncsnv2_num_levels: need sigma_max > sigma_min > 0 and gamma > 1")
    return 1 + math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma) - 1e-12)


def ncsnv2_step_ratio(eps, gamma: float, sigma_L: float, T: int):
    """Technique 4 (NCSNv2 §3.4, Proposition 3): ``s_T² / σ_i²`` after T annealed-Langevin steps
    (code convention) at level σ_i, starting from the previous level's variance γ² σ_i².

    With ``u = ε/σ_L²`` every level contracts by ``(1 − u)`` per step towards the fixed point
    ``2ε / (σ_L² − σ_L²(1 − u)²)``. ``eps``: float or tensor; returns the same type.
    """
    u = eps / sigma_L**2
    fixed_point = 2.0 * eps / (sigma_L**2 - sigma_L**2 * (1.0 - u) ** 2)
    return (1.0 - u) ** (2 * T) * (gamma**2 - fixed_point) + fixed_point


class OptimalStep(NamedTuple):
    """ε minimising ``|s_T²/σ_i² − 1|`` and the ratio reached there."""

    eps: float
    ratio: float


def ncsnv2_optimal_eps(gamma: float, sigma_L: float, T: int, grid_size: int = 4000) -> OptimalStep:
    """Technique 4: the step ε ∈ (0, σ_L²) bringing :func:`ncsnv2_step_ratio` closest to 1.

    The ratio exceeds 1 for every ε (it mixes γ² > 1 and a fixed point 2/(2 − u) > 1), so there
    is no exact root; this returns the minimiser — a log-spaced scan of u = ε/σ_L² over
    [1e-8, 1), refined by golden-section search in the bracketing cell.
    """
    if not (gamma > 1 and sigma_L > 0 and T >= 1):
        raise ValueError(f"ncsnv2_optimal_eps: need gamma > 1, sigma_L > 0, T >= 1; got {gamma}, {sigma_L}, {T}")
    s2 = sigma_L**2

    def err(u: float) -> float:
        return abs(ncsnv2_step_ratio(u * s2, gamma, sigma_L, T) - 1.0)

    us = torch.logspace(-8, math.log10(1 - 1e-9), grid_size, dtype=torch.float64).tolist()
    k = min(range(len(us)), key=lambda i: err(us[i]))
    lo, hi = us[max(k - 1, 0)], us[min(k + 1, len(us) - 1)]
    invphi = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(200):  # golden-section search on the unimodal bracket
        a, b = hi - invphi * (hi - lo), lo + invphi * (hi - lo)
        lo, hi = (lo, b) if err(a) < err(b) else (a, hi)
    u = 0.5 * (lo + hi)
    return OptimalStep(eps=u * s2, ratio=ncsnv2_step_ratio(u * s2, gamma, sigma_L, T))
