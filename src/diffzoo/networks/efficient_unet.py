"""Imagen's Efficient U-Net (Saharia et al. 2022, §2.5; the block diagrams of its appendix; App. F.2–F.3).

Three changes to the U-Net of :mod:`diffzoo.networks.unet`, made to super-resolve at high resolution
with less memory and time:

* **parameters moved to low resolutions**: each level has its own number of residual blocks
  (``num_res_blocks`` per level, e.g. 2, 4, 8, 8 from the highest resolution down), so the cheap,
  low-resolution levels hold most of the weights;
* **skip connections scaled by 1/√2** before they are concatenated in the decoder
  (imagen-pytorch ``skip_connect_scale = 2 ** -0.5``);
* **downsampling before and upsampling after the convolutions**: a DBlock is a strided conv, then the
  embedding, then its residual blocks; a UBlock is the embedding and the residual blocks, then the
  upsampling conv — the residual blocks of every level run at that level's
  resolution only.

ResNetBlock (Imagen's appendix block diagram): ``GN–swish–conv3×3–GN–swish–conv3×3`` plus a 1×1 conv of the input.
The noise level (and class / pooled text / ``added_emb``) is embedded as in the U-Net and added to the
features once per block ("CombineEmbs" in the block diagrams). Optional self-attention and Imagen's text
cross-attention at chosen levels. Same call signature as :class:`~diffzoo.networks.UNet`, so
:class:`~diffzoo.networks.super_resolution.SuperResolutionNet` wraps either.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .attention import AttentionBlock, _norm, _zero
from .embeddings import sinusoidal_embedding
from .text_attention import CrossAttentionBlock

__all__ = ["EfficientUNet", "EfficientResBlock", "SKIP_SCALE", "parameter_count_closed_form"]

SKIP_SCALE = 2**-0.5  # Imagen §2.5: "We scale the skip connections by 1/√2"


class EfficientResBlock(nn.Module):
    """Imagen's ResNetBlock: ``conv3(swish(GN(conv3(swish(GN(x)))))) + conv1×1(x)``. ``[B, cin, H, W] → [B, cout, H, W]``."""

    def __init__(self, cin: int, cout: int, num_groups: int):
        super().__init__()
        self.block = nn.Sequential(_norm(cin, num_groups), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                   _norm(cout, num_groups), nn.SiLU(), _zero(nn.Conv2d(cout, cout, 3, padding=1)))
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.skip(x)


class _Level(nn.Module):
    """The residual blocks of one level with the embedding added first ("CombineEmbs") and optional
    self-attention / cross-attention after them."""

    def __init__(self, cin: int, ch: int, n: int, emb_dim: int, num_groups: int, heads: int, attention: bool,
                 text_dim: int | None, cross_attention: bool):
        super().__init__()
        self.emb = nn.Linear(emb_dim, cin)
        self.blocks = nn.ModuleList(EfficientResBlock(cin if i == 0 else ch, ch, num_groups) for i in range(n))
        self.attn = AttentionBlock(ch, heads, num_groups) if attention else None
        self.xattn = CrossAttentionBlock(ch, heads, num_groups, text_dim) if (cross_attention and text_dim) else None

    def forward(self, h, emb, context=None, context_mask=None):
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        for block in self.blocks:
            h = block(h)
        if self.attn is not None:
            h = self.attn(h)
        if self.xattn is not None:
            h = self.xattn(h, context, context_mask)
        return h


class EfficientUNet(nn.Module):
    """Imagen's Efficient U-Net (module docstring).

    Args:
        in_channels, out_channels, image_size: as :class:`~diffzoo.networks.UNet`.
        base_channels: width of the input conv at full resolution.
        channels: width of each level, highest resolution first (App. F.2: 128, 256, 512, 1024).
        num_res_blocks: residual blocks of each level (App. F.2: 2, 4, 8, 8), one per entry of ``channels``.
        attention_levels: indices of the levels with self-attention (App. F.2: the last level only; F.3: none).
        cross_attention_levels: indices of the levels with text cross-attention when ``text_dim`` is set
            (App. F.2 and F.3: the last level).
        num_head_channels: width of an attention head.
        num_groups: GroupNorm groups.
        num_classes: a class embedding with a null class (classifier-free guidance), as the U-Net's.
        text_dim: width of the text states (Imagen: T5-XXL, 4096); their pooled vector is added to the
            time embedding.
        embedding_dim: width of the time embedding and of ``added_emb`` (default ``4·base_channels``).

    Every level halves the resolution (its DBlock's strided conv), so ``image_size`` must be divisible
    by ``2^len(channels)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, image_size: int = 256, base_channels: int = 128,
                 channels: Sequence[int] = (128, 256, 512, 1024), num_res_blocks: Sequence[int] = (2, 4, 8, 8),
                 attention_levels: Sequence[int] = (3,), cross_attention_levels: Sequence[int] = (3,),
                 num_head_channels: int = 64, num_groups: int = 32,
                 num_classes: int | None = None, text_dim: int | None = None, embedding_dim: int | None = None):
        super().__init__()
        channels, num_res_blocks = tuple(int(c) for c in channels), tuple(int(n) for n in num_res_blocks)
        if len(channels) != len(num_res_blocks) or not channels:
            raise ConfigError(f"net.channels {list(channels)} and net.num_res_blocks {list(num_res_blocks)} need one "
                              "entry per level")
        if image_size % 2 ** len(channels):
            raise ConfigError(f"net.image_size={image_size} is not divisible by 2^{len(channels)} (one halving per level)")
        for key, levels in (("attention_levels", attention_levels), ("cross_attention_levels", cross_attention_levels)):
            bad = [i for i in levels if not 0 <= int(i) < len(channels)]
            if bad:
                raise ConfigError(f"net.{key} {bad} are not levels 0..{len(channels) - 1}")
        widths = (base_channels, *channels)
        if any(w % num_groups for w in widths) or any(channels[int(i)] % num_head_channels for i in (*attention_levels, *cross_attention_levels)):
            raise ConfigError(f"net.num_groups={num_groups} must divide every width {list(widths)} and "
                              f"net.num_head_channels={num_head_channels} every attention width")
        self.in_channels, self.out_channels, self.image_size = in_channels, out_channels, image_size
        self.base_channels, self.num_classes, self.text_dim = base_channels, num_classes, text_dim
        emb_dim = self.embedding_dim = int(embedding_dim or 4 * base_channels)
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.text_pool_proj = nn.Linear(text_dim, emb_dim) if text_dim else None
        self.input_conv = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        attn, xattn = {int(i) for i in attention_levels}, {int(i) for i in cross_attention_levels}
        self.downsample = nn.ModuleList()
        self.down = nn.ModuleList()
        prev = base_channels
        for i, (ch, n) in enumerate(zip(channels, num_res_blocks)):
            self.downsample.append(nn.Conv2d(prev, ch, 3, stride=2, padding=1))  # DBlock: downsample first (Imagen §2.5)
            self.down.append(_Level(ch, ch, n, emb_dim, num_groups, ch // num_head_channels, i in attn, text_dim,
                                   i in xattn))
            prev = ch
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            cin = (prev if i == len(channels) - 1 else ch) + ch  # [h; skip / √2]
            self.up.append(_Level(cin, ch, num_res_blocks[i], emb_dim, num_groups, ch // num_head_channels, i in attn, text_dim,
                                  i in xattn))
            out = channels[i - 1] if i > 0 else base_channels
            self.upsample.append(nn.Conv2d(ch, out, 3, padding=1))  # UBlock: upsample last (Imagen §2.5)
        self.out = nn.Sequential(_norm(base_channels, num_groups), nn.SiLU(),
                                 _zero(nn.Conv2d(base_channels, out_channels, 3, padding=1)))

    @property
    def null_class(self) -> int | None:
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None, added_emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, in_channels, H, W]``, ``t`` ``[B]`` (or a scalar), ``y`` ``[B]``, text ``context``
        ``[B, L, text_dim]`` / ``context_mask`` ``[B, L]`` / ``pooled`` ``[B, text_dim]``, ``added_emb``
        ``[B, embedding_dim]`` → ``[B, out_channels, H, W]`` (as :meth:`diffzoo.networks.UNet.forward`)."""
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        emb = self.time_mlp(sinusoidal_embedding(t.float(), self.base_channels))
        if self.class_embed is not None:
            y = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long) if y is None else y
            emb = emb + self.class_embed(y)
        elif y is not None:
            raise ValueError("EfficientUNet: got class labels y but the network was built with num_classes=None")
        if pooled is not None:
            emb = emb + self.text_pool_proj(pooled)
        if added_emb is not None:
            emb = emb + added_emb
        h = self.input_conv(x)
        skips = []
        for down, level in zip(self.downsample, self.down):
            h = level(down(h), emb, context, context_mask)
            skips.append(h)
        for i, (level, up) in enumerate(zip(self.up, self.upsample)):
            h = level(torch.cat([h, skips.pop() * SKIP_SCALE], dim=1), emb, context, context_mask)
            h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # Imagen §2.5: upsample after the convolutions
        return self.out(h)


def parameter_count_closed_form(in_channels: int, out_channels: int, base_channels: int, channels: Sequence[int],
                                num_res_blocks: Sequence[int]) -> int:
    """Parameters of an :class:`EfficientUNet` without attention, class or text parts, counted layer by layer
    from its definition (convolutions ``k²·cin·cout + cout``, GroupNorm ``2c``, linear ``din·dout + dout``)."""
    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    def res(cin, cout):
        return 2 * cin + conv(3, cin, cout) + 2 * cout + conv(3, cout, cout) + conv(1, cin, cout)

    e = 4 * base_channels
    total = base_channels * e + e + e * e + e + conv(3, in_channels, base_channels)
    prev = base_channels
    for ch, n in zip(channels, num_res_blocks):
        total += conv(3, prev, ch) + e * ch + ch + res(ch, ch) * n
        prev = ch
    for i in reversed(range(len(channels))):
        ch, n = channels[i], num_res_blocks[i]
        cin = (prev if i == len(channels) - 1 else ch) + ch
        total += e * cin + cin + res(cin, ch) + res(ch, ch) * (n - 1)
        total += conv(3, ch, channels[i - 1] if i > 0 else base_channels)
    return int(total + 2 * base_channels + conv(3, base_channels, out_channels))

