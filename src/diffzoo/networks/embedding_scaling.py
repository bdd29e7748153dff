"""How unCLIP's prior scales CLIP image embeddings before diffusing them — three conventions exist.

A unit-norm CLIP embedding of width ``e`` has per-dimension standard deviation about ``1/√e``
(0.03 for e = 1024): "very badly scaled for Gaussian diffusion" (DALLE2-pytorch issue #60). The
prior therefore diffuses ``x₀ = encode(z_i)`` and samples are mapped back with ``decode``:

=============  ====================================  =============================================
convention     ``encode(z)``                          source
=============  ====================================  =============================================
``paper``      ``17.2 · z``                          unCLIP (Ramesh et al. 2022) §2.2: "we scale
                                                     the inputs … by 17.2" (per-dimension std
                                                     17.2/√1024 ≈ 0.54 for ViT-H's e = 1024)
``sqrt_dim``   ``√e · z``                            DALLE2-pytorch ``image_embed_scale = dim ** 0.5``
                                                     (per-dimension std ≈ 1)
``data_stats`` ``(z − μ) / σ`` per dimension          Karlo (``ViT-L-14_stats.th``; diffusers'
                                                     ``PriorTransformer.clip_mean`` / ``clip_std``)
=============  ====================================  =============================================

``paper`` is a fixed number tied to e = 1024: at another width its per-dimension std is
``17.2/√e`` (2.15 at e = 64). ``data_stats`` needs ``μ, σ [e]`` of the training embeddings
(:meth:`EmbeddingScaling.fit`); they are buffers and travel with a checkpoint.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["CONVENTIONS", "PAPER_SCALE", "EmbeddingScaling"]

PAPER_SCALE = 17.2  # unCLIP §2.2
Convention = Literal["paper", "sqrt_dim", "data_stats"]
CONVENTIONS = ("paper", "sqrt_dim", "data_stats")


class EmbeddingScaling(nn.Module):
    """``encode(z [B, e]) → x₀`` and its inverse ``decode`` for one of :data:`CONVENTIONS`.

    Args:
        convention: ``"paper"`` (default), ``"sqrt_dim"`` or ``"data_stats"``.
        dim: ``e``.
    """

    def __init__(self, convention: Convention = "paper", dim: int = 1024):
        super().__init__()
        if convention not in CONVENTIONS:
            raise ConfigError(f"model.embedding_scaling must be one of {list(CONVENTIONS)}, got {convention!r}")
        self.convention, self.dim = convention, int(dim)
        self.register_buffer("mean", torch.zeros(self.dim))
        self.register_buffer("std", torch.ones(self.dim))
        self.register_buffer("fitted", torch.tensor(convention != "data_stats"))

    @property
    def scale(self) -> float | None:
        """The scalar factor of ``paper`` / ``sqrt_dim`` (None for ``data_stats``)."""
        return {"paper": PAPER_SCALE, "sqrt_dim": math.sqrt(self.dim)}.get(self.convention)

    @torch.no_grad()
    def fit(self, z: torch.Tensor) -> None:
        """Set ``μ, σ`` of ``data_stats`` from training embeddings ``z [N, e]`` (no-op otherwise)."""
        if self.convention != "data_stats":
            return
        self.mean.copy_(z.mean(0))
        self.std.copy_(z.std(0).clamp_min(1e-6))
        self.fitted.fill_(True)

    def _check(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("EmbeddingScaling('data_stats') is used before fit(z): the data statistics are unknown")

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """CLIP embedding ``z [B, e]`` → the prior's diffusion variable ``x₀ [B, e]``."""
        self._check()
        if self.scale is not None:
            return z * self.scale
        return (z - self.mean.to(z.dtype)) / self.std.to(z.dtype)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`: ``x [B, e]`` → ``z [B, e]``."""
        self._check()
        if self.scale is not None:
            return x / self.scale
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)
