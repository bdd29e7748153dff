"""Conditioning augmentation of a cascade's low-resolution input (CDM §3.1–3.2; Imagen §2.4).

A super-resolution stage is trained on ground-truth low-resolution images ``z = D(x)`` but sampled
on the previous stage's *samples*. Corrupting ``z`` in training, and by a chosen amount at sampling,
closes that train–test gap (CDM §3, "compounding error"). Two corruptions:

* **Gaussian noise with the forward process of the low-resolution model** (CDM §3.2; Imagen §2.4's
  "noise conditioning augmentation"): ``z_s = α(t_s) z + σ(t_s) ε`` at level ``s ∈ [0, 1]``, where
  ``t_s = t_min + s·(t_max − t_min)`` is that process's time and ``s = 0`` means no noise at all.
  Training draws ``s`` per example from ``U[s_lo, s_hi]`` (a point mass ``p_zero`` at 0 added) — the
  model is *amortised* over the level, which it sees through its level embedding — and sampling
  fixes ``s`` (CDM §3.2; Imagen App. D.2 sweeps it). The level reaches the network as
  ``aug_level`` (:class:`~diffzoo.networks.super_resolution.SuperResolutionNet`). At sampling,
  *non-truncated* augmentation corrupts the previous stage's final sample ``z_0`` with
  :meth:`GaussianNoiseAugmentation.sample`; *truncated* augmentation stops the previous stage's
  reverse chain at ``t_s`` and passes its ``z_s`` on (:func:`diffzoo.samplers.truncated.ancestral_until`).
  Both give the SR model ``q(z_s)`` when the low-resolution model is exact.
* **Gaussian blur** (CDM §3.1, for the high-resolution stages): applied to a fraction ``prob`` of
  the training examples (CDM: 50 %) with ``σ ~ U[σ_lo, σ_hi]``, never at sampling ("during inference,
  no augmentation is applied", CDM §3.1). unCLIP's upsamplers use kernel 3, σ 0.6 (App. C).

Every draw takes a ``torch.Generator`` (the module's step seed), so training stays exactly resumable.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..utils.random import GeneratorLike, randn_like

__all__ = ["AugmentedLowRes", "GaussianNoiseAugmentation", "GaussianBlur", "ConditioningAugmentation",
           "gaussian_kernel1d", "gaussian_blur"]


class AugmentedLowRes(NamedTuple):
    """The low-resolution condition a super-resolution network gets: ``low_res`` ``[B, C, h, w]``
    (augmented) and its augmentation level ``aug_level`` float ``[B]`` in ``[0, 1]``."""

    low_res: torch.Tensor
    aug_level: torch.Tensor


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def _check_range(key: str, values: Sequence[float], lo: float, hi: float | None) -> tuple[float, float]:
    a, b = (float(v) for v in values)
    if not (lo <= a <= b and (hi is None or b <= hi)):
        bound = f"[{lo}, {hi}]" if hi is not None else f"[{lo}, ∞)"
        raise ConfigError(f"{key} must be [low, high] with low <= high inside {bound}; got {list(values)}")
    return a, b


class GaussianNoiseAugmentation(nn.Module):
    """Forward-process noise on the low-resolution image (module docstring; CDM §3.2, Imagen §2.4).

    Args:
        process: the forward process of the low-resolution model (any
            :class:`~diffzoo.schedules.process.GaussianProcess`); ``None`` until
            :meth:`set_process` gives one (the SR module passes its own schedule).
        train_levels: ``[s_lo, s_hi]`` ⊂ [0, 1], the training range of levels (amortisation).
        p_zero: probability of level 0 (no noise) for a training example.
        sample_level: the level fixed at sampling.
    """

    def __init__(self, process=None, train_levels: Sequence[float] = (0.0, 0.5), p_zero: float = 0.0,
                 sample_level: float = 0.0):
        super().__init__()
        self.train_levels = _check_range("augmentation.noise.train_levels", train_levels, 0.0, 1.0)
        if not 0.0 <= float(p_zero) <= 1.0:
            raise ConfigError(f"augmentation.noise.p_zero must lie in [0, 1]; got {p_zero}")
        if not 0.0 <= float(sample_level) <= 1.0:
            raise ConfigError(f"augmentation.noise.sample_level must lie in [0, 1]; got {sample_level}")
        self.p_zero, self.sample_level = float(p_zero), float(sample_level)
        self.process = process

    def set_process(self, process) -> None:
        """Use ``process`` unless one was configured."""
        if self.process is None:
            self.process = process

    def time_of(self, level) -> torch.Tensor:
        """The process time ``t_s = t_min + s·(t_max − t_min)`` of levels ``s`` (float64, same shape)."""
        lo, hi = float(self.process.t_min), float(self.process.t_max)
        return lo + torch.as_tensor(level, dtype=torch.float64) * (hi - lo)

    def noise(self, z: torch.Tensor, level: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``z_s = α(t_s) z + σ(t_s) ε`` per example (``q(z_s | z)``, DDPM eq. 4 / VDM eq. 2); ``z``
        itself where ``s = 0``. Shapes: ``z``, ``eps`` ``[B, …]``, ``level`` ``[B]``."""
        if self.process is None:
            raise ConfigError("augmentation.noise has no forward process: set augmentation.noise.process")
        level = torch.as_tensor(level, dtype=torch.float64).reshape(-1).expand(z.shape[0])
        t = self.time_of(level.cpu())
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        shape = (-1,) + (1,) * (z.ndim - 1)
        alpha = torch.where(level.cpu() > 0, alpha, torch.ones_like(alpha)).to(z.device, z.dtype).reshape(shape)
        sigma = torch.where(level.cpu() > 0, sigma, torch.zeros_like(sigma)).to(z.device, z.dtype).reshape(shape)
        return alpha * z + sigma * eps

    def train_draw(self, z: torch.Tensor, generator: torch.Generator | None = None) -> AugmentedLowRes:
        """Training: ``s ~ p_zero·δ_0 + (1 − p_zero)·U[s_lo, s_hi]`` per example, then :meth:`noise`."""
        B = z.shape[0]
        level = _uniform(B, *self.train_levels, generator)
        level = torch.where(torch.rand(B, generator=generator, dtype=torch.float64) < self.p_zero, 0.0, level)
        eps = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z.device, z.dtype)
        return AugmentedLowRes(self.noise(z, level, eps), level.to(z.device, torch.float32))

    def sample(self, z: torch.Tensor, level: float | None = None, generator: GeneratorLike = None) -> AugmentedLowRes:
        """Sampling: non-truncated augmentation of a final low-resolution sample ``z`` at the fixed
        level (``sample_level`` unless ``level`` is given); ``generator`` may be one per sample."""
        s = self.sample_level if level is None else float(level)
        levels = torch.full((z.shape[0],), s, dtype=torch.float64)
        out = self.noise(z, levels, randn_like(z, generator)) if s > 0 else z
        return AugmentedLowRes(out, levels.to(z.device, torch.float32))


def gaussian_kernel1d(size: int, sigma: float | torch.Tensor) -> torch.Tensor:
    """The normalised 1-D Gaussian ``k_i ∝ exp(−(i − c)² / 2σ²)``, ``i = 0…size−1``, ``c = (size−1)/2``
    (sums to 1). ``sigma`` a float → ``[size]``; a ``[B]`` tensor → ``[B, size]``."""
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"augmentation.blur.kernel_size must be a positive odd integer; got {size}")
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(offsets**2) / (2 * sigma[..., None] ** 2))
    return k / k.sum(-1, keepdim=True)


def gaussian_blur(z: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Blur each image of ``z`` ``[B, C, H, W]`` with its own σ (``sigma`` ``[B]``) by the separable
    kernel of :func:`gaussian_kernel1d`, reflecting at the borders (so constant images stay constant)."""
    B, C, H, W = z.shape
    k = gaussian_kernel1d(size, sigma.reshape(B)).to(z.device, z.dtype)  # [B, size]
    k = k.repeat_interleave(C, dim=0)  # one kernel per (image, channel): a grouped convolution
    pad = size // 2
    h = F.pad(z.reshape(1, B * C, H, W), (pad, pad, pad, pad), mode="reflect" if pad < min(H, W) else "replicate")
    h = F.conv2d(h, k[:, None, :, None], groups=B * C)  # along H
    h = F.conv2d(h, k[:, None, None, :], groups=B * C)  # along W
    return h.reshape(B, C, H, W)


class GaussianBlur(nn.Module):
    """CDM's blur augmentation (§3.1): in training each example is blurred with probability ``prob``
    (CDM: 0.5) by a Gaussian of ``σ ~ U[sigma_lo, sigma_hi]``; at sampling never.

    Args:
        prob: fraction of training examples blurred.
        sigma: ``[sigma_lo, sigma_hi]`` (unCLIP App. C: fixed 0.6, i.e. ``[0.6, 0.6]``).
        kernel_size: odd kernel side (unCLIP App. C: 3).
    """

    def __init__(self, prob: float = 0.5, sigma: Sequence[float] = (0.6, 0.6), kernel_size: int = 3):
        super().__init__()
        if not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"augmentation.blur.prob must lie in [0, 1]; got {prob}")
        self.prob = float(prob)
        self.sigma = _check_range("augmentation.blur.sigma", sigma, 1e-6, None)
        gaussian_kernel1d(int(kernel_size), 1.0)  # validates the size
        self.kernel_size = int(kernel_size)

    def train_draw(self, z: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z', blurred)``: ``z`` with a random ``prob`` share of its examples blurred, and the bool mask ``[B]``."""
        B = z.shape[0]
        blurred = torch.rand(B, generator=generator, dtype=torch.float64) < self.prob
        sigma = _uniform(B, *self.sigma, generator)
        if not bool(blurred.any()):
            return z, blurred.to(z.device)
        mask = blurred.to(z.device)
        out = z.clone()
        out[mask] = gaussian_blur(z[mask], sigma[blurred], self.kernel_size)
        return out, mask

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """Sampling: no blur (CDM §3.1)."""
        return z


class ConditioningAugmentation(nn.Module):
    """The augmentation of a super-resolution stage: optional blur, then optional Gaussian noise.

    ``train_draw(z, generator)`` → :class:`AugmentedLowRes` for a training batch; ``sample(z, level,
    generator)`` → the condition at sampling (no blur; noise at the fixed level). Without noise the
    level is 0 throughout.
    """

    def __init__(self, noise: GaussianNoiseAugmentation | None = None, blur: GaussianBlur | None = None):
        super().__init__()
        self.noise, self.blur = noise, blur

    @property
    def sample_level(self) -> float:
        """The level used at sampling (0 without noise augmentation)."""
        return self.noise.sample_level if self.noise is not None else 0.0

    def set_process(self, process) -> None:
        """Give the noise augmentation the low-resolution model's process unless configured."""
        if self.noise is not None:
            self.noise.set_process(process)

    def train_draw(self, z: torch.Tensor, generator: torch.Generator | None = None) -> AugmentedLowRes:
        if self.blur is not None:
            z, _ = self.blur.train_draw(z, generator)
        if self.noise is not None:
            return self.noise.train_draw(z, generator)
        return AugmentedLowRes(z, torch.zeros(z.shape[0], device=z.device))

    def sample(self, z: torch.Tensor, level: float | None = None, generator: GeneratorLike = None) -> AugmentedLowRes:
        if self.noise is not None:
            return self.noise.sample(z, level, generator)
        if level not in (None, 0, 0.0) and not math.isclose(float(level), 0.0):
            raise ConfigError(f"aug_level={level} but this model was trained without noise augmentation "
                              "(model.augmentation.noise=null): only level 0 is defined")
        return AugmentedLowRes(z, torch.zeros(z.shape[0], device=z.device))
