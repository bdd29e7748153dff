"""Smooth functions of a discrete step index, shared by networks and schedules."""

from __future__ import annotations

import torch

__all__ = ["temporal_bump_basis"]


def temporal_bump_basis(T: int, num_basis: int) -> torch.Tensor:
    """Normalised Gaussian bumps over the steps (SD15 code ``generate_temporal_basis``), float64
    ``[num_basis, T]`` whose columns sum to 1:
    ``g_k(t) ∝ exp(−(s_t − c_k)² / (2 w²))``, ``s_t = linspace(−1, 1, T)[t]``,
    ``c_k = linspace(−1, 1, K)[k]``, ``w = (c_1 − c_0) / 2``. SD15 uses them both for the reverse
    kernel's time dependence and for the β perturbation (K = 10)."""
    if T < 1 or num_basis < 2:
        raise ValueError(f"temporal_bump_basis: need T >= 1 and num_basis >= 2, got {T}, {num_basis}")
    s = torch.linspace(-1.0, 1.0, T, dtype=torch.float64)
    centers = torch.linspace(-1.0, 1.0, num_basis, dtype=torch.float64)
    width = (centers[1] - centers[0]) / 2
    bumps = torch.exp(-((s[None, :] - centers[:, None]) ** 2) / (2 * width**2))
    return bumps / bumps.sum(0, keepdim=True)
