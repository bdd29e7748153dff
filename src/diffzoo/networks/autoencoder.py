"""The first-stage autoencoders of latent diffusion (Rombach et al. 2022, §3.1, App. G): the
convolutional encoder / decoder of CompVis ``ldm/modules/diffusionmodules/model.py`` (the VQGAN
layout of Esser et al. 2021) and the two regularised autoencoders built on it, ``AutoencoderKL``
and ``VQModel`` (``ldm/models/autoencoder.py``). Both satisfy
:class:`~diffzoo.networks.first_stage.FirstStage`.

Layout (module names follow CompVis, so its state dicts load by name; see
:mod:`diffzoo.networks.autoencoder_checkpoints` for diffusers'):

* ``Encoder``: ``conv_in`` → per level ``i`` (width ``ch·ch_mult[i]``) ``num_res_blocks`` residual
  blocks (``down[i].block[j]``, attention ``down[i].attn[j]`` at resolutions in
  ``attn_resolutions``), a stride-2 ``down[i].downsample`` except at the last level → ``mid``
  (block, attention, block) → GroupNorm, swish, ``conv_out`` to ``2·z_channels`` (``double_z``:
  mean and log-variance) or ``z_channels``.
* ``Decoder``: the mirror image with ``num_res_blocks + 1`` blocks per level and nearest ×2
  upsampling + conv.

The downsampling factor is ``f = 2^(len(ch_mult) − 1)``; LDM uses f ∈ {1, 2, 4, 8, 16}
(``ch_mult`` of length 1 … 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .gaussian_posterior import DiagonalGaussian
from .vector_quantizer import VectorQuantizer

__all__ = ["Encoder", "Decoder", "AutoencoderKL", "VQModel", "AutoencoderOutput", "DOWNSAMPLING_FACTORS"]

DOWNSAMPLING_FACTORS = (1, 2, 4, 8, 16)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # CompVis Normalize(): GroupNorm(32, C, eps=1e-6, affine=True)
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """``x + conv(swish(norm(conv(swish(norm(x))))))`` with a 1×1 ``nin_shortcut`` when the width
    changes (CompVis ``ResnetBlock`` without a time embedding). ``[B, C_in, H, W]`` → ``[B, C_out, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1-conv ``q, k, v, proj_out`` and softmax scale
    ``C^(−1/2)`` (CompVis ``AttnBlock``). ``[B, C, H, W]`` → same."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, 1, c, h * w).transpose(-1, -2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √C) v
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3×3 conv after padding one pixel right and bottom (CompVis ``Downsample``, with_conv)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest ×2, then a 3×3 conv (CompVis ``Upsample``, with_conv)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _check_layout(ch: int, ch_mult, num_res_blocks: int, norm_groups: int) -> tuple[int, ...]:
    ch_mult = tuple(int(m) for m in ch_mult)
    if not 1 <= len(ch_mult) <= len(DOWNSAMPLING_FACTORS):
        raise ConfigError(f"net.ch_mult={list(ch_mult)} gives f = 2^{len(ch_mult) - 1}; f must be one of "
                          f"{list(DOWNSAMPLING_FACTORS)} (ch_mult of length 1 to {len(DOWNSAMPLING_FACTORS)})")
    if num_res_blocks < 1:
        raise ConfigError(f"net.num_res_blocks must be >= 1, got {num_res_blocks}")
    bad = [ch * m for m in ch_mult if (ch * m) % norm_groups]
    if bad:
        raise ConfigError(f"net.ch={ch} x net.ch_mult gives widths {bad} not divisible by net.norm_groups={norm_groups}")
    return ch_mult


class Encoder(nn.Module):
    """Images ``[B, in_channels, H, W]`` → ``[B, (2·)z_channels, H/f, W/f]`` (see the module docstring).

    Args:
        ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, double_z, resolution, in_channels,
        dropout: as CompVis ``Encoder`` (``resolution`` only places the attention blocks).
        norm_groups: GroupNorm groups (32 in CompVis; smaller for test-size widths).
    """

    def __init__(self, *, ch: int, ch_mult, num_res_blocks: int, attn_resolutions=(), z_channels: int, double_z: bool = True,
                 resolution: int, in_channels: int, dropout: float = 0.0, norm_groups: int = 32):
        super().__init__()
        ch_mult = _check_layout(ch, ch_mult, num_res_blocks, norm_groups)
        attn_resolutions = {int(r) for r in attn_resolutions}
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        res, block_in = int(resolution), ch
        for level, mult in enumerate(ch_mult):
            down = nn.Module()
            down.block, down.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                down.block.append(ResnetBlock(block_in, ch * mult, dropout, norm_groups))
                block_in = ch * mult
                if res in attn_resolutions:
                    down.attn.append(AttnBlock(block_in, norm_groups))
            if level != len(ch_mult) - 1:
                down.downsample = Downsample(block_in)
                res //= 2
            self.down.append(down)
        self.mid = _mid(block_in, dropout, norm_groups)
        self.norm_out = _norm(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for down in self.down:
            for j, block in enumerate(down.block):
                h = block(h)
                if len(down.attn):
                    h = down.attn[j](h)
            if hasattr(down, "downsample"):
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latents ``[B, z_channels, H/f, W/f]`` → images ``[B, out_ch, H, W]`` (see the module docstring)."""

    def __init__(self, *, ch: int, ch_mult, num_res_blocks: int, attn_resolutions=(), z_channels: int, resolution: int,
                 out_ch: int, dropout: float = 0.0, norm_groups: int = 32):
        super().__init__()
        ch_mult = _check_layout(ch, ch_mult, num_res_blocks, norm_groups)
        attn_resolutions = {int(r) for r in attn_resolutions}
        block_in = ch * ch_mult[-1]
        res = int(resolution) // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, dropout, norm_groups)
        ups = []
        for level in reversed(range(len(ch_mult))):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, ch * ch_mult[level], dropout, norm_groups))
                block_in = ch * ch_mult[level]
                if res in attn_resolutions:
                    up.attn.append(AttnBlock(block_in, norm_groups))
            if level != 0:
                up.upsample = Upsample(block_in)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)  # up[0] is the full resolution, as CompVis indexes it
        self.norm_out = _norm(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for up in reversed(self.up):
            for j, block in enumerate(up.block):
                h = block(h)
                if len(up.attn):
                    h = up.attn[j](h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def _mid(channels: int, dropout: float, groups: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout, groups)
    mid.attn_1 = AttnBlock(channels, groups)
    mid.block_2 = ResnetBlock(channels, channels, dropout, groups)
    return mid


@dataclass
class AutoencoderOutput:
    """One pass through an autoencoder.

    Attributes:
        x_rec: reconstruction ``[B, C, H, W]``.
        z: the latent that was decoded ``[B, D, h, w]`` (KL: the posterior sample; VQ: pre-quantisation).
        reg_loss: the regulariser, a scalar (KL: ``KL(q(z|x) ‖ N(0, I))`` summed over the latent and
            averaged over the batch, as CompVis; VQ: codebook + commitment loss).
        stats: extra scalars to log (VQ: ``perplexity``, ``codebook_usage``).
    """

    x_rec: torch.Tensor
    z: torch.Tensor
    reg_loss: torch.Tensor
    stats: dict = field(default_factory=dict)


class _Autoencoder(nn.Module):
    """What the KL and VQ autoencoders share: the encoder / decoder pair and the FirstStage attributes."""

    kind = "?"

    def __init__(self, *, ch: int, ch_mult, num_res_blocks: int, attn_resolutions, z_channels: int, double_z: bool,
                 resolution: int, in_channels: int, out_ch: int | None, dropout: float, norm_groups: int, embed_dim: int):
        super().__init__()
        out_ch = in_channels if out_ch is None else out_ch
        common = dict(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                      z_channels=z_channels, resolution=resolution, dropout=dropout, norm_groups=norm_groups)
        self.encoder = Encoder(**common, double_z=double_z, in_channels=in_channels)
        self.decoder = Decoder(**common, out_ch=out_ch)
        self.in_channels, self.out_channels, self.resolution = int(in_channels), int(out_ch), int(resolution)
        self.latent_channels = int(embed_dim)
        self.downsampling_factor = 2 ** (len(tuple(ch_mult)) - 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, where the adaptive GAN weight compares gradients (CompVis ``get_last_layer``)."""
        return self.decoder.conv_out.weight

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, H, W)`` of an image → ``(latent_channels, H/f, W/f)`` of its latent."""
        _, h, w = image_shape
        f = self.downsampling_factor
        if h % f or w % f:
            raise ValueError(f"image sides {h}x{w} are not multiples of f={f}")
        return (self.latent_channels, h // f, w // f)


class AutoencoderKL(_Autoencoder):
    """KL-regularised autoencoder (LDM §3.1, "KL-reg."; CompVis ``AutoencoderKL``):
    ``x → encoder → quant_conv (1×1, 2·z_channels → 2·embed_dim) → q(z|x) = N(μ, σ²)``;
    ``z → post_quant_conv (1×1, embed_dim → z_channels) → decoder``.

    Args:
        embed_dim: latent channels (kl-f4: 3, kl-f8: 4); the other arguments are the encoder /
            decoder layout (:class:`Encoder`); ``out_ch`` defaults to ``in_channels``.
    """

    kind = "kl"

    def __init__(self, *, ch: int = 128, ch_mult=(1, 2, 4), num_res_blocks: int = 2, attn_resolutions=(),
                 z_channels: int = 3, embed_dim: int = 3, resolution: int = 256, in_channels: int = 3,
                 out_ch: int | None = None, dropout: float = 0.0, norm_groups: int = 32):
        super().__init__(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                         z_channels=z_channels, double_z=True, resolution=resolution, in_channels=in_channels,
                         out_ch=out_ch, dropout=dropout, norm_groups=norm_groups, embed_dim=embed_dim)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, 1)

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """``q(z | x)`` of images ``[B, C, H, W]`` in ``[−1, 1]``."""
        return DiagonalGaussian(self.quant_conv(self.encoder(x)))

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, C, H, W]`` → a posterior sample ``z`` ``[B, embed_dim, H/f, W/f]`` (LDM's
        ``get_first_stage_encoding``: ``posterior.sample()``)."""
        return self.posterior(x).sample(generator)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``[B, embed_dim, h, w]`` → images ``[B, out_ch, h·f, w·f]``."""
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None) -> AutoencoderOutput:
        """Reconstruct ``x`` through a posterior sample (the mean when ``sample_posterior=False``)."""
        q = self.posterior(x)
        z = q.sample(generator) if sample_posterior else q.mode()
        return AutoencoderOutput(self.decode(z), z, q.kl().mean())


class VQModel(_Autoencoder):
    """VQ-regularised autoencoder (LDM §3.1, "VQ-reg."; CompVis ``VQModel`` / ``VQModelInterface``):
    ``x → encoder → quant_conv (z_channels → embed_dim)`` gives the latent ``z`` the diffusion model
    sees, **before** quantisation (LDM §3.1: the quantiser is "absorbed by the decoder");
    ``decode`` quantises ``z`` (nearest of ``n_embed`` codes), then ``post_quant_conv → decoder``.

    Args:
        n_embed: codebook size (vq-f4: 8192, vq-f8: 16384); ``embed_dim``: its vectors' size;
        beta, loss_form: of the :class:`~diffzoo.networks.vector_quantizer.VectorQuantizer`.
    """

    kind = "vq"

    def __init__(self, *, ch: int = 128, ch_mult=(1, 2, 4), num_res_blocks: int = 2, attn_resolutions=(),
                 z_channels: int = 3, embed_dim: int = 3, n_embed: int = 8192, beta: float = 0.25,
                 loss_form: str = "legacy", resolution: int = 256, in_channels: int = 3, out_ch: int | None = None,
                 dropout: float = 0.0, norm_groups: int = 32):
        super().__init__(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                         z_channels=z_channels, double_z=False, resolution=resolution, in_channels=in_channels,
                         out_ch=out_ch, dropout=dropout, norm_groups=norm_groups, embed_dim=embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=beta, loss_form=loss_form)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` → the pre-quantisation latent ``[B, embed_dim, H/f, W/f]``."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """``z`` ``[B, embed_dim, h, w]`` → images: quantised first unless ``quantize=False``
        (CompVis ``decode(h, force_not_quantize)``)."""
        if quantize:
            z = self.quantize(z).z_q
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        """Reconstruct ``x`` through the codebook; ``reg_loss`` is the codebook + commitment loss."""
        z = self.encode(x)
        q = self.quantize(z)
        x_rec = self.decoder(self.post_quant_conv(q.z_q))
        return AutoencoderOutput(x_rec, z, q.loss, {"perplexity": q.perplexity, "codebook_usage": q.usage})
