"""Transforms of x̂₀ applied inside a denoiser (:meth:`~diffzoo.denoisers.Denoiser.with_x0_transform`).

* :class:`ClipX0` — clip x̂₀ to the data range: DDPM's and improved-diffusion's ``clip_denoised``,
  which Imagen (Saharia et al. 2022, §2.3) calls *static thresholding*.
* :class:`DynamicThreshold` — Imagen's dynamic thresholding (§2.3): a per-sample percentile of |x̂₀|.

Both are callables ``x0 [B, …] → x0 [B, …]``; samplers and guidance need no change.
:func:`x0_threshold` builds one from the config values ``sampler.threshold`` /
``sampler.threshold_percentile`` (:class:`~diffzoo.samplers.SamplerSpec`).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..utils.tensors import bcast

__all__ = ["ClipX0", "DynamicThreshold", "THRESHOLDS", "x0_threshold"]

THRESHOLDS = ("none", "static", "dynamic")


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


class DynamicThreshold:
    """Imagen's dynamic thresholding (Saharia et al. 2022, §2.3): per sample, ``s`` = the
    ``percentile``-th percentile of ``|x̂₀|`` over its pixels, ``s ← max(s, 1)``, then
    ``x̂₀ ← clamp(x̂₀, −s, s) / s`` — saturated pixels are pushed inwards instead of clipped, which
    keeps large guidance weights from saturating the image.

    Written for data in ``[−1, 1]``; another data range ``[lo, hi]`` is mapped there first (centre
    and half-width) and back afterwards. ``percentile`` is in percent: 99.5 in the paper (§2.3 /
    App. E); imagen-pytorch and DeepFloyd IF use 95 (their quantile 0.95). x̂₀ with every pixel in
    the range has ``s = 1`` and is left unchanged; the output always lies in the range.
    """

    def __init__(self, percentile: float = 99.5, lo: float = -1.0, hi: float = 1.0):
        if not 0.0 < float(percentile) <= 100.0:
            raise ValueError(f"sampler.threshold_percentile must lie in (0, 100] (percent; Imagen: 99.5), got {percentile!r}")
        if not hi > lo:
            raise ValueError(f"DynamicThreshold: need hi > lo, got ({lo}, {hi})")
        self.percentile = float(percentile)
        self.centre, self.half = (float(lo) + float(hi)) / 2, (float(hi) - float(lo)) / 2

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        y = (x0 - self.centre) / self.half  # the data range as [−1, 1]
        flat = y.detach().abs().flatten(1).float()
        s = torch.quantile(flat, self.percentile / 100.0, dim=1).clamp(min=1.0)  # [B], Imagen §2.3
        s = bcast(s, y)
        return self.centre + self.half * (torch.minimum(torch.maximum(y, -s), s) / s)

    def __repr__(self) -> str:
        return f"DynamicThreshold(p={self.percentile:g})"


def x0_threshold(kind: str, data_range: tuple[float, float], percentile: float = 99.5) -> Callable | None:
    """The x̂₀ transform of ``sampler.threshold`` (one of :data:`THRESHOLDS`) for data in ``data_range``;
    ``None`` for ``"none"``."""
    if kind not in THRESHOLDS:
        raise ValueError(f"sampler.threshold must be one of {list(THRESHOLDS)}; got {kind!r}")
    if kind == "none":
        return None
    if kind == "static":
        return ClipX0(*data_range)
    return DynamicThreshold(percentile, *data_range)
