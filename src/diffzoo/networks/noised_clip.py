"""GLIDE's noised CLIP (Nichol et al. 2021, §4.4 / App. B.1): a CLIP whose image encoder sees noisy
images ``x_t`` and their noise level, ``f(x_t, t)``, so that its gradient can guide every step of a
diffusion sampler ("we train CLIP models ... on noised images", the base model's noise schedule).

The paper's image encoder is a ViT with the timestep as an extra token; here, at digits size, a CNN
tower (:class:`~diffzoo.networks.clip.ConvImageTower`'s layout) whose every stage is modulated by the
time input — FiLM, ``h ← h·(1 + γ(τ)) + β(τ)`` (Perez et al. 2018), ``γ, β`` linear in an MLP of the
sinusoidal embedding of ``τ`` (the time embedding of DDPM's U-Net, Ho et al. 2020 App. B) — starting
at zero, so the untrained time path is the plain tower. The text side is the plain CLIP's.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .clip import CLIP
from .embeddings import sinusoidal_embedding

__all__ = ["NoisedConvImageTower", "NoisedCLIP"]


class NoisedConvImageTower(nn.Module):
    """``(x_t [B, C, H, W], τ [B]) → [B, embed_dim]`` (not normalised).

    Args:
        in_channels, image_size, widths, embed_dim: as :class:`~diffzoo.networks.clip.ConvImageTower`.
        time_channels: width of the sinusoidal time embedding and its MLP.
    """

    def __init__(self, in_channels: int, image_size: int, widths: Sequence[int], embed_dim: int, time_channels: int = 64):
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ConfigError(f"net.image_tower.widths must be a non-empty list of positive ints, got {widths}")
        self.in_channels, self.image_size, self.time_channels = int(in_channels), int(image_size), int(time_channels)
        self.time_mlp = nn.Sequential(nn.Linear(self.time_channels, self.time_channels), nn.SiLU())
        self.convs, self.norms, self.films = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cin = self.in_channels
        for i, w in enumerate(widths):
            self.convs.append(nn.Conv2d(cin, w, 3, stride=1 if i == 0 else 2, padding=1))
            self.norms.append(nn.GroupNorm(min(8, w), w))
            film = nn.Linear(self.time_channels, 2 * w)
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
            self.films.append(film)
            cin = w
        self.proj = nn.Linear(cin, int(embed_dim), bias=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, C, H, W]``, ``t`` ``[B]`` the diffusion model's time input (None: 0, clean images)."""
        if t is None:
            t = torch.zeros(x.shape[0], device=x.device)
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).expand(x.shape[0])
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_channels).to(x.dtype))
        h = x
        for conv, norm, film in zip(self.convs, self.norms, self.films):
            gamma, beta = film(emb).chunk(2, dim=1)
            h = F.gelu(norm(conv(h)) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        return self.proj(h.mean(dim=(2, 3)))


class NoisedCLIP(CLIP):
    """A :class:`~diffzoo.networks.clip.CLIP` whose image encoder takes the noise level:
    ``encode_image(x_t, t)``; without ``t`` the images are taken as clean (τ = 0)."""

    def encode_image(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t [B, C, H, W]``, ``t [B]`` → ``z_i [B, e]``, unit norm."""
        return F.normalize(self.image_tower(x, t), dim=-1)
