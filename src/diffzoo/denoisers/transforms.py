"""Transforms of x̂₀ applied inside a denoiser (:meth:`~diffzoo.denoisers.Denoiser.with_x0_transform`).

* :class:`ClipX0` — clip x̂₀ to the data range: DDPM's and improved-diffusion's ``clip_denoised``,
  which Imagen (Saharia et al. 2022, §2.3) calls *static thresholding*.

Imagen's dynamic thresholding (a per-sample percentile of |x̂₀|) is another such transform: a callable
``x0 [B, …] → x0 [B, …]`` handed to ``with_x0_transform``; samplers and guidance need no change.
"""

from __future__ import annotations

import torch

__all__ = ["ClipX0"]


class ClipX0:
    """``x̂₀ ↦ clamp(x̂₀, lo, hi)`` (DDPM code ``clip_denoised``; Imagen's static thresholding)."""

    def __init__(self, lo: float = -1.0, hi: float = 1.0):
        if not hi > lo:
            raise ValueError(f"ClipX0: need hi > lo, got ({lo}, {hi})")
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        return x0.clamp(self.lo, self.hi)

    def __repr__(self) -> str:
        return f"ClipX0({self.lo:g}, {self.hi:g})"
