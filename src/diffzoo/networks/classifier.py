"""The noise-aware classifier of classifier guidance: ``p_φ(y | x_t, t)`` (Dhariwal & Nichol 2021, §4.1).

ADM trains a classifier on noised images ``x_t`` so that its gradient ``∇_{x_t} log p_φ(y | x_t)``
can steer sampling at every noise level. Its architecture is "the downsampling trunk of the
U-Net model with an attention pool at the 8×8 layer" (ADM §4.1, App. K; the official
``EncoderUNetModel`` with ``pool="attention"``): the same time embedding, the same ResBlocks
(AdaGN, BigGAN resampling) and attention blocks as :class:`~diffzoo.networks.unet.UNet`, then a
middle ResBlock–attention–ResBlock, GN–SiLU and an attention pool (CLIP, Radford et al. 2021,
§2.4: the mean token, plus a learned positional embedding, attends over all positions) giving
the logits. The network knows nothing of schedules: ``t`` is the noise-level value the caller
feeds the diffusion model too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .embeddings import sinusoidal_embedding
from .unet import AttentionBlock, EmbedSequential, ResBlock, _check_args, _norm, _xavier, _zero, build_encoder

__all__ = ["NoisyClassifier", "AttentionPool2d", "POOLS"]

POOLS = ("attention", "mean")


class AttentionPool2d(nn.Module):
    """Attention pooling (CLIP §2.4; ADM's ``AttentionPool2d``): ``[B, C, H, W] → [B, out_dim]``.

    The tokens are the ``H·W`` positions with their mean prepended, plus a learned positional
    embedding ``[C, H·W + 1]``; one multi-head attention step (Vaswani et al. 2017, eq. 1) with
    the mean token as the only query, then a linear map to ``out_dim``.
    """

    def __init__(self, spatial: int, channels: int, num_heads: int, out_dim: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"AttentionPool2d: {channels} channels do not split into {num_heads} heads")
        self.spatial, self.num_heads = spatial, num_heads
        self.positional_embedding = nn.Parameter(torch.randn(channels, spatial**2 + 1) / channels**0.5)
        self.qkv = _xavier(nn.Conv1d(channels, 3 * channels, 1))
        self.proj = _xavier(nn.Conv1d(channels, out_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if H * W != self.spatial**2:
            raise ValueError(f"AttentionPool2d: expected a {self.spatial}x{self.spatial} map, got {H}x{W}")
        tokens = x.reshape(B, C, H * W)
        tokens = torch.cat([tokens.mean(-1, keepdim=True), tokens], dim=-1) + self.positional_embedding.to(x.dtype)
        L, d = tokens.shape[-1], C // self.num_heads
        q, k, v = self.qkv(tokens).reshape(B, 3, self.num_heads, d, L).transpose(-1, -2).unbind(dim=1)
        h = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # the mean token's query only: [B, heads, 1, d]
        return self.proj(h.transpose(-1, -2).reshape(B, C, 1))[:, :, 0]


class NoisyClassifier(nn.Module):
    """ADM's noise-aware classifier ``f(x_t, t) → logits`` (Dhariwal & Nichol 2021, §4.1, App. K).

    Layout: the :class:`~diffzoo.networks.unet.UNet` encoder (:func:`~diffzoo.networks.unet.build_encoder`),
    a middle ResBlock–attention–ResBlock, GN–SiLU, then ``pool``: ``"attention"`` (ADM's
    classifiers) or ``"mean"`` (global average pool and a zero-initialised 1×1 conv, ADM's
    ``"adaptive"`` pool). The noise level enters through the same time embedding as the U-Net.

    Args: as :class:`~diffzoo.networks.unet.UNet` (``base_channels`` = ADM's
    ``classifier_width``, ``num_res_blocks`` = ``classifier_depth``), plus ``num_classes`` (the
    logits) and ``pool``.

    Shapes: ``x`` ``[B, in_channels, H, W]``, ``t`` float ``[B]`` (or a scalar) → ``[B, num_classes]``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 128,
        num_classes: int = 1000,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 3, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.0,
        num_heads: int = 1,
        num_head_channels: int | None = 64,
        num_groups: int = 32,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        pool: Literal["attention", "mean"] = "attention",
        use_checkpoint: bool = False,
    ):
        super().__init__()
        channel_mult = tuple(int(m) for m in channel_mult)
        attention_resolutions = tuple(int(r) for r in attention_resolutions)
        _check_args(
            in_channels=in_channels, out_channels=num_classes, image_size=image_size,
            base_channels=base_channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions, dropout=dropout, num_heads=num_heads,
            num_head_channels=num_head_channels, num_groups=num_groups, num_classes=None,
        )
        if pool not in POOLS:
            raise ValueError(f"NoisyClassifier: pool must be one of {POOLS}, got {pool!r}")
        self.in_channels, self.image_size, self.num_classes = in_channels, image_size, num_classes
        self.base_channels, self.use_checkpoint = base_channels, use_checkpoint
        self.downsampling_factor = 2 ** (len(channel_mult) - 1)

        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(
            _xavier(nn.Linear(base_channels, emb_dim)), nn.SiLU(), _xavier(nn.Linear(emb_dim, emb_dim))
        )

        def block(cin: int, cout: int, resample: str | None = None) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout=dropout, num_groups=num_groups,
                            scale_shift=use_scale_shift_norm, resample=resample)

        def heads(ch: int) -> int:
            return ch // num_head_channels if num_head_channels else num_heads

        enc = build_encoder(in_channels, image_size, base_channels, channel_mult, num_res_blocks,
                            attention_resolutions, resblock_updown, block,
                            lambda ch: AttentionBlock(ch, heads(ch), num_groups))
        self.input_conv, self.down = enc.input_conv, enc.down
        ch = enc.channels
        self.mid = EmbedSequential(block(ch, ch), AttentionBlock(ch, heads(ch), num_groups), block(ch, ch))
        if pool == "attention":
            head: nn.Module = AttentionPool2d(enc.resolution, ch, heads(ch), num_classes)
        else:
            head = nn.Sequential(nn.AdaptiveAvgPool2d(1), _zero(nn.Conv2d(ch, num_classes, 1)), nn.Flatten())
        self.out = nn.Sequential(_norm(ch, num_groups), nn.SiLU(), head)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, H, W]``, ``t`` float ``[B]`` → logits ``[B, num_classes]``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.image_size or x.shape[3] != self.image_size:
            raise ValueError(
                f"NoisyClassifier: x must have shape [B, {self.in_channels}, {self.image_size}, {self.image_size}], "
                f"got {tuple(x.shape)}"
            )
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        if t.shape != (x.shape[0],):
            raise ValueError(f"NoisyClassifier: t must have shape [{x.shape[0]}], got {tuple(t.shape)}")
        emb = self.time_mlp(sinusoidal_embedding(t, self.base_channels).to(x.dtype))
        h = self.input_conv(x)
        for stage in [*self.down, self.mid]:
            if self.use_checkpoint and torch.is_grad_enabled():
                h = checkpoint(stage, h, emb, use_reentrant=False)
            else:
                h = stage(h, emb)
        return self.out(h)
