"""Noise-level embeddings: a float tensor ``t`` of shape ``[B]`` → features ``[B, dim]``.

Both are computed in float32 even under autocast: a half-precision ``t·ω`` loses the
low-order digits of large timestep indices (bf16 cannot tell t = 998 from t = 999).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["sinusoidal_embedding", "GaussianFourierEmbedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of a noise level, as used by DDPM.

    DDPM's ``nn.get_timestep_embedding`` (Ho et al. 2020, code; the tensor2tensor variant of
    Vaswani et al. 2017 §3.5): with ``half = dim // 2`` and ``i = 0, …, half − 1``,
    ``ω_i = max_period^(−i / (half − 1))`` and ``emb = [sin(t·ω), cos(t·ω)]``, zero-padded by
    one column when ``dim`` is odd.

    Args:
        t: ``[B]`` noise levels (DDPM: the timestep index 0 … T−1 as float).
        dim: embedding width, at least 4.
        max_period: the longest wavelength, ``2π·max_period``.

    Returns:
        float32 ``[B, dim]``.
    """
    if dim < 4:
        raise ValueError(f"sinusoidal_embedding: dim must be >= 4, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"sinusoidal_embedding: t must have shape [B], got {tuple(t.shape)}")
    half = dim // 2
    with torch.autocast(device_type=t.device.type, enabled=False):
        i = torch.arange(half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(-math.log(max_period) * i / (half - 1))
        args = t.float()[:, None] * freqs[None, :]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
        return F.pad(emb, (0, dim % 2))


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of a noise level (Song et al. 2021, Score SDE, the NCSN++
    time embedding; Tancik et al. 2020): ``W ~ N(0, scale²)`` drawn once and kept fixed (a
    buffer, so it is saved in checkpoints), ``emb = [sin(2π t W), cos(2π t W)]``.

    Score SDE feeds ``log σ`` to it for VE models with ``scale = 16``.

    Args:
        dim: embedding width (even).
        scale: standard deviation of the frequencies ``W``.
    """

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"GaussianFourierEmbedding: dim must be even and >= 2, got {dim}")
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t``: ``[B]`` → float32 ``[B, dim]``."""
        with torch.autocast(device_type=t.device.type, enabled=False):
            args = 2 * math.pi * t.float()[:, None] * self.freqs.float()[None, :]
            return torch.cat([torch.sin(args), torch.cos(args)], dim=1)
