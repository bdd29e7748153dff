"""The first-stage contract of latent diffusion (Rombach et al. 2022, §3): an image autoencoder
whose latent space a diffusion model is trained in.

A first stage maps images ``x`` ``[B, C, H, W]`` in ``[-1, 1]`` to latents ``z``
``[B, latent_channels, H/f, W/f]`` and back. Latent diffusion (:mod:`diffzoo.lit.latent_diffusion`)
needs nothing else of it, so the KL and VQ autoencoders, a pixel-space identity (f = 1, the
baseline of LDM Fig. 6) and a loaded diffusers / CompVis model are interchangeable.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["FirstStage", "IdentityFirstStage"]


@runtime_checkable
class FirstStage(Protocol):
    """What latent diffusion uses of an autoencoder.

    Attributes:
        latent_channels: channels of ``z``.
        downsampling_factor: ``f``; ``z`` has sides ``H / f`` and ``W / f``.
        kind: ``"kl"`` (continuous, rescaled by 1/std(z) in LDM's ``scale_by_std``), ``"vq"``
            (the pre-quantisation ``z``, *not* rescaled in LDM's code) or ``"identity"``.
    """

    latent_channels: int
    downsampling_factor: int
    kind: str

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, H, W]`` in ``[-1, 1]`` → ``z`` ``[B, latent_channels, H/f, W/f]``
        (KL: a sample of the posterior, as LDM's ``get_first_stage_encoding``; VQ: ``z`` before
        quantisation)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``[B, latent_channels, H/f, W/f]`` → ``x`` ``[B, C, H, W]`` (VQ: quantised first)."""


class IdentityFirstStage(nn.Module):
    """f = 1 and no autoencoder: "latent" diffusion in pixel space, the LDM-1 baseline (LDM Fig. 6)."""

    kind = "identity"
    downsampling_factor = 1

    def __init__(self, channels: int = 3):
        super().__init__()
        self.latent_channels = int(channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` → the same tensor."""
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` → the same tensor."""
        return z
