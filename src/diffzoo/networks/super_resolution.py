"""The super-resolution network of a cascade: a U-Net that also sees the low-resolution image.

Cascaded Diffusion Models (Ho, Saharia et al. 2021, §2–3) and Imagen (Saharia et al. 2022, §2.4)
condition every super-resolution stage ``p_θ(x | z)`` on the low-resolution image ``z`` by

* upsampling ``z`` to the output resolution and concatenating it to ``x_t`` along the channels
  (CDM §2; Imagen §2.4);
* embedding the conditioning-augmentation level ``s`` (CDM §3.2: "as an extra time embedding"; Imagen §2.4:
  the model is conditioned on the augmentation level) and adding it to the time embedding — here through the
  backbone's ``added_emb`` input (:meth:`diffzoo.networks.UNet.forward`).

Class or text conditioning passes through to the backbone unchanged. The wrapper knows nothing of
noise schedules: the level ``s ∈ [0, 1]`` is a number it embeds, and what noise it stands for is the
augmentation's (:mod:`diffzoo.objectives.conditioning_augmentation`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .embeddings import sinusoidal_embedding

__all__ = ["SuperResolutionNet", "UPSAMPLE_MODES", "AUG_LEVEL_SCALE", "upsample"]

UPSAMPLE_MODES = ("nearest", "bilinear", "bicubic")

# The level s ∈ [0, 1] enters the sinusoidal embedding as s·1000: the range of the timestep index a
# 1000-step DDPM schedule feeds the same features (DDPM code), so the embedding's frequencies resolve
# levels as finely as they resolve timesteps (DeepFloyd IF embeds its augmentation *step* 0…999 alike).
AUG_LEVEL_SCALE = 1000.0


def upsample(z: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``z`` ``[B, C, h, w]`` → ``[B, C, size, size]`` by ``mode`` (one of :data:`UPSAMPLE_MODES`);
    bicubic overshoot is left as it is (the network sees it in training and sampling alike)."""
    if z.shape[-1] == size and z.shape[-2] == size:
        return z
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(z, size=(size, size), mode=mode, **kwargs)


class SuperResolutionNet(nn.Module):
    """``f(x_t, t, low_res, aug_level, y, …)`` = ``backbone([x_t; up(low_res)], t, y, …,
    added_emb=E(aug_level))`` (CDM §2, §3.2; Imagen §2.4).

    Args:
        backbone: the network that sees ``2·channels`` input channels and takes ``added_emb``
            ``[B, embedding_dim]`` (:class:`~diffzoo.networks.UNet`, the Efficient U-Net).
        channels: image channels ``C`` (of ``x_t`` and of the low-resolution image alike).
        low_res_size: side of the low-resolution input (e.g. 8 for an 8 → 16 stage).
        upsample_mode: how ``low_res`` is brought to the output size, one of :data:`UPSAMPLE_MODES`
            (config ``net.upsample_mode``).

    Shapes: ``x`` ``[B, C, H, W]``, ``t`` ``[B]``, ``low_res`` ``[B, C, low_res_size, low_res_size]``,
    ``aug_level`` float ``[B]`` in ``[0, 1]`` (``None``: level 0) → ``[B, out_channels, H, W]``.
    """

    def __init__(self, backbone: nn.Module, channels: int, low_res_size: int, upsample_mode: str = "bilinear"):
        super().__init__()
        if upsample_mode not in UPSAMPLE_MODES:
            raise ConfigError(f"net.upsample_mode must be one of {list(UPSAMPLE_MODES)}; got {upsample_mode!r}")
        if getattr(backbone, "in_channels", None) != 2 * channels:
            raise ConfigError(f"net.backbone.in_channels must be 2 × net.channels = {2 * channels} (x_t and the "
                              f"upsampled low-resolution image); got {getattr(backbone, 'in_channels', None)}")
        if not hasattr(backbone, "embedding_dim"):
            raise ConfigError(f"net.backbone ({type(backbone).__name__}) takes no added_emb: it needs an embedding_dim")
        size = int(getattr(backbone, "image_size", low_res_size))
        if not 0 < int(low_res_size) < size:
            raise ConfigError(f"net.low_res_size={low_res_size} must lie in [1, net.backbone.image_size={size})")
        self.backbone = backbone
        self.in_channels = int(channels)  # what the data has: the builder checks it against the data shape
        self.out_channels = int(backbone.out_channels)
        self.image_size = size
        self.low_res_size = int(low_res_size)
        self.upsample_mode = upsample_mode
        self.num_classes = getattr(backbone, "num_classes", None)
        self.text_dim = getattr(backbone, "text_dim", None)
        self.text_encoder_dim = getattr(backbone, "text_encoder_dim", self.text_dim)  # what a text module checks
        dim = self.embedding_dim = int(backbone.embedding_dim)
        self.aug_features = min(dim, 128)
        # A second time embedding (CDM §3.2): sinusoidal features → Linear–SiLU–Linear, as the U-Net's own.
        self.aug_mlp = nn.Sequential(nn.Linear(self.aug_features, dim), nn.SiLU(), nn.Linear(dim, dim))

    @property
    def null_class(self) -> int | None:
        """The backbone's "no class" label (classifier-free guidance), or None."""
        return getattr(self.backbone, "null_class", None)

    def aug_embedding(self, aug_level: torch.Tensor) -> torch.Tensor:
        """``E(s)`` ``[B, embedding_dim]`` for levels ``s`` ``[B]`` in ``[0, 1]``."""
        feats = sinusoidal_embedding(aug_level.float() * AUG_LEVEL_SCALE, self.aug_features)
        return self.aug_mlp(feats.to(self.aug_mlp[0].weight.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor, low_res: torch.Tensor | None = None,
                aug_level: torch.Tensor | None = None, **cond) -> torch.Tensor:
        """See the class docstring; ``cond`` (``y``, ``context``, ``pooled``, …) goes to the backbone."""
        if low_res is None:
            raise ValueError("SuperResolutionNet: low_res is required (the low-resolution image [B, C, h, w])")
        B = x.shape[0]
        if low_res.shape != (B, self.in_channels, self.low_res_size, self.low_res_size):
            raise ValueError(f"SuperResolutionNet: low_res must have shape "
                             f"[{B}, {self.in_channels}, {self.low_res_size}, {self.low_res_size}], got {tuple(low_res.shape)}")
        if aug_level is None:
            aug_level = torch.zeros(B, device=x.device)
        aug_level = torch.as_tensor(aug_level, device=x.device, dtype=torch.float32)
        if aug_level.ndim == 0:
            aug_level = aug_level.expand(B)
        h = torch.cat([x, upsample(low_res, x.shape[-1], self.upsample_mode).to(x.dtype)], dim=1)
        return self.backbone(h, t, added_emb=self.aug_embedding(aug_level), **cond)
