"""DDPM++ and NCSN++ (Song et al. 2021, Score SDE, App. H): one configurable U-Net ``f(x, c)``.

Both are the DDPM U-Net with the changes of Score SDE App. H: BigGAN-style residual blocks that
resample inside the block, skip connections rescaled by 1/√2, 4 residual blocks per level and,
for NCSN++, FIR resampling (kernel [1, 3, 3, 1]), a "progressive" input pyramid and a Gaussian
Fourier embedding of the noise level. The paper's CIFAR-10 choices (code:
``configs/vp/cifar10_ddpmpp_continuous.py``, ``configs/ve/cifar10_ncsnpp_continuous.py``):

=============  ===========  =========  ==========  ====================  ==========
model          embedding    resblock   FIR         progressive in / out  input
=============  ===========  =========  ==========  ====================  ==========
DDPM++ cont.   positional   biggan     no          none / none           [−1, 1]
NCSN++ cont.   fourier      biggan     [1,3,3,1]   residual / none       [0, 1]
=============  ===========  =========  ==========  ====================  ==========

The network knows nothing of noise schedules: ``c`` is whatever noise-level value the caller
feeds (DDPM++: ``999·t``; NCSN++: ``log σ`` up to an additive constant), and the division of
NCSN++'s output by σ (``scale_by_sigma``) is the score parameterisation's job
(:mod:`diffzoo.parameterization.score`, ``kind=scaled``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import GaussianFourierEmbedding, sinusoidal_embedding
from .ncsnpp_layers import (
    RESBLOCK_KINDS, SKIP_SCALE, AttentionBlockPP, Combine, Downsample, ResBlockPP, Upsample, conv3x3,
    default_init, group_norm,
)

__all__ = ["NCSNpp", "EMBEDDINGS", "PROGRESSIVE", "PROGRESSIVE_INPUT"]

EMBEDDINGS = ("positional", "fourier")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")


class _Level(nn.Module):
    """The modules of one resolution level (down or up path)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attns = nn.ModuleList()
        self.resample: nn.Module | None = None
        self.pyramid: nn.ModuleList | None = None


class NCSNpp(nn.Module):
    """DDPM++ / NCSN++ (Score SDE App. H; ``models/ncsnpp.py`` of the official code).

    Layout: conv_in; per level ``num_res_blocks`` residual blocks (each followed by attention if
    the level's resolution is in ``attention_resolutions``) and, except at the last level, a
    down-sampling residual block ("biggan") or :class:`Downsample` ("ddpm"), after which the
    input pyramid enters ("input_skip": ``Combine`` of the FIR/average-pooled image; "residual":
    a down-sampling conv of the pyramid added to the features and rescaled); a middle
    block–attention–block; per level ``num_res_blocks + 1`` blocks fed the concatenated skips, one
    attention, the output pyramid ("output_skip": GN–SiLU–conv to image channels, summed over
    levels through up-sampling; "residual": up-sampled by a conv and added to the features) and an
    up-sampler; GN–SiLU–conv_out (not with "output_skip"). The noise level enters as
    ``Linear(SiLU(Linear(embedding(c))))`` of width ``4·base_channels``.

    Args (official config names in brackets):
        in_channels: image channels [``data.num_channels``]; out_channels: defaults to it.
        image_size: side of the training images; sides must be divisible by 2^(levels − 1).
        base_channels [``nf``], channel_mult [``ch_mult``], num_res_blocks,
        attention_resolutions [``attn_resolutions``]: as in :class:`~diffzoo.networks.UNet`.
        dropout: inside every residual block.
        resblock_type: ``"biggan"`` (resample inside residual blocks) or ``"ddpm"``.
        resamp_with_conv: the "ddpm" resamplers use a conv (else nearest / average pooling).
        fir, fir_kernel: FIR resampling with the separable kernel (Score SDE: [1, 3, 3, 1]).
        skip_rescale: multiply every residual sum by 1/√2.
        progressive [``progressive``]: output pyramid, one of :data:`PROGRESSIVE`.
        progressive_input: input pyramid, one of :data:`PROGRESSIVE_INPUT`.
        progressive_combine: ``"sum"`` or ``"cat"`` for "input_skip".
        embedding_type: ``"positional"`` (sinusoidal of ``c``, width ``base_channels``) or
            ``"fourier"`` (Gaussian Fourier features of ``c`` with ``fourier_scale``, width
            ``2·base_channels``; Score SDE feeds ``c = log σ``).
        rescale_input: map the input ``x ↦ 2x − 1`` first (Score SDE ``data.centered=False``:
            the model works on data in [0, 1], as for the VE SDE).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resblock_type: Literal["biggan", "ddpm"] = "biggan",
        resamp_with_conv: bool = True,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        progressive: Literal["none", "output_skip", "residual"] = "none",
        progressive_input: Literal["none", "input_skip", "residual"] = "none",
        progressive_combine: Literal["sum", "cat"] = "sum",
        embedding_type: Literal["positional", "fourier"] = "positional",
        fourier_scale: float = 16.0,
        rescale_input: bool = False,
        out_channels: int | None = None,
    ):
        super().__init__()
        channel_mult = tuple(int(m) for m in channel_mult)
        attention_resolutions = tuple(int(r) for r in attention_resolutions)
        fir_kernel = tuple(float(v) for v in fir_kernel)
        out_channels = out_channels or in_channels
        _check_args(locals())
        self.in_channels, self.out_channels, self.image_size = in_channels, out_channels, image_size
        self.base_channels, self.embedding_type = base_channels, embedding_type
        self.progressive, self.progressive_input = progressive, progressive_input
        self.skip_scale = SKIP_SCALE if skip_rescale else 1.0
        self.rescale_input = rescale_input
        self.downsampling_factor = 2 ** (len(channel_mult) - 1)
        levels = len(channel_mult)

        nf, emb_dim = base_channels, 4 * base_channels
        self.fourier = GaussianFourierEmbedding(2 * nf, fourier_scale) if embedding_type == "fourier" else None
        self.time_mlp = nn.Sequential(
            default_init(nn.Linear(2 * nf if self.fourier is not None else nf, emb_dim)), nn.SiLU(),
            default_init(nn.Linear(emb_dim, emb_dim)),
        )

        def block(cin: int, cout: int | None = None, resample: str | None = None) -> ResBlockPP:
            return ResBlockPP(cin, cout, emb_dim, kind=resblock_type, resample=resample, dropout=dropout,
                              fir=fir, fir_kernel=fir_kernel, skip_rescale=skip_rescale)

        def resampler(cls, cin: int, cout: int | None = None, with_conv: bool = resamp_with_conv) -> nn.Module:
            return cls(cin, cout, with_conv=with_conv, fir=fir, fir_kernel=fir_kernel)

        # ---- down path
        self.conv_in = conv3x3(in_channels, nf)
        ch, pyramid_ch, res = nf, in_channels, image_size
        skips = [ch]
        self.down = nn.ModuleList()
        for i, mult in enumerate(channel_mult):
            level = _Level()
            for _ in range(num_res_blocks):
                level.blocks.append(block(ch, nf * mult))
                ch = nf * mult
                if res in attention_resolutions:
                    level.attns.append(AttentionBlockPP(ch, skip_rescale))
                skips.append(ch)
            if i < levels - 1:
                level.resample = block(ch, resample="down") if resblock_type == "biggan" else resampler(Downsample, ch)
                if progressive_input == "input_skip":  # the image, pooled / FIR-filtered, merged by a 1×1 conv
                    level.pyramid = nn.ModuleList([resampler(Downsample, in_channels, with_conv=False),
                                                   Combine(in_channels, ch, progressive_combine)])
                    ch = 2 * ch if progressive_combine == "cat" else ch
                elif progressive_input == "residual":  # previous pyramid level, down-sampled by a conv
                    level.pyramid = nn.ModuleList([resampler(Downsample, pyramid_ch, ch, with_conv=True)])
                    pyramid_ch = ch
                skips.append(ch)
                res //= 2
            self.down.append(level)

        self.mid = nn.ModuleList([block(ch), AttentionBlockPP(ch, skip_rescale), block(ch)])

        # ---- up path
        self.up = nn.ModuleList()
        pyramid_ch = 0
        for i, mult in reversed(list(enumerate(channel_mult))):
            level = _Level()
            for _ in range(num_res_blocks + 1):
                level.blocks.append(block(ch + skips.pop(), nf * mult))
                ch = nf * mult
            if res in attention_resolutions:
                level.attns.append(AttentionBlockPP(ch, skip_rescale))
            if progressive == "output_skip":  # GN–SiLU–conv to image channels at every level
                level.pyramid = nn.ModuleList([group_norm(ch), conv3x3(ch, out_channels, init_scale=0.0)])
            elif progressive == "residual" and i == levels - 1:  # starts as GN–SiLU–conv (init scale 1)
                level.pyramid = nn.ModuleList([group_norm(ch), conv3x3(ch, ch)])
                pyramid_ch = ch
            elif progressive == "residual":
                level.pyramid = nn.ModuleList([Upsample(pyramid_ch, ch, with_conv=True, fir=fir, fir_kernel=fir_kernel)])
                pyramid_ch = ch
            if i > 0:
                level.resample = block(ch, resample="up") if resblock_type == "biggan" else resampler(Upsample, ch)
                res *= 2
            self.up.append(level)
        # "output_skip" up-samples the image-space pyramid without a conv (nearest or FIR)
        self.pyramid_up = Upsample(out_channels, fir=fir, fir_kernel=fir_kernel) if progressive == "output_skip" else None
        self.out = None if progressive == "output_skip" else nn.Sequential(
            group_norm(ch), nn.SiLU(), conv3x3(ch, out_channels, init_scale=0.0))

    def embed(self, c: torch.Tensor) -> torch.Tensor:
        """Noise level ``c`` ``[B]`` → embedding ``[B, 4·base_channels]``."""
        e = self.fourier(c) if self.fourier is not None else sinusoidal_embedding(c, self.base_channels)
        return self.time_mlp(e.to(self.time_mlp[0].weight.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, in_channels, H, W]``, ``t`` float ``[B]`` (or a scalar) noise level →
        ``[B, out_channels, H, W]``. ``y`` must be None (the network is unconditional)."""
        t = self._check_inputs(x, t, y)
        emb = self.embed(t).to(x.dtype)
        if self.rescale_input:
            x = 2 * x - 1  # Score SDE ncsnpp.py: data in [0, 1] mapped to [−1, 1]
        pyramid = x if self.progressive_input != "none" else None
        h = self.conv_in(x)
        hs = [h]
        for level in self.down:
            for j, blk in enumerate(level.blocks):
                h = blk(h, emb)
                if level.attns:
                    h = level.attns[j](h)
                hs.append(h)
            if level.resample is None:
                continue
            h = level.resample(h, emb) if isinstance(level.resample, ResBlockPP) else level.resample(h)
            if self.progressive_input == "input_skip":
                pyramid = level.pyramid[0](pyramid)
                h = level.pyramid[1](pyramid, h)
            elif self.progressive_input == "residual":
                pyramid = (level.pyramid[0](pyramid) + h) * self.skip_scale
                h = pyramid
            hs.append(h)

        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)

        pyramid = None
        for level in self.up:
            for blk in level.blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
            for attn in level.attns:
                h = attn(h)
            if self.progressive == "output_skip":
                out = level.pyramid[1](F.silu(level.pyramid[0](h)))
                pyramid = out if pyramid is None else self.pyramid_up(pyramid) + out
            elif self.progressive == "residual":
                if pyramid is None:
                    pyramid = level.pyramid[1](F.silu(level.pyramid[0](h)))
                else:
                    pyramid = (level.pyramid[0](pyramid) + h) * self.skip_scale
                    h = pyramid
            if level.resample is not None:
                h = level.resample(h, emb) if isinstance(level.resample, ResBlockPP) else level.resample(h)
        return pyramid if self.out is None else self.out(h)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None:
            raise ValueError("NCSNpp: got class labels y but the network is unconditional (model.conditional=false)")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"NCSNpp: x must have shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        f = self.downsampling_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"NCSNpp: image sides {tuple(x.shape[2:])} must be divisible by {f} = 2^(len(channel_mult) - 1)")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"NCSNpp: t must have shape [{x.shape[0]}], got {tuple(t.shape)}")
        return t


def _check_args(a: dict) -> None:
    """Raise a ValueError naming the offending NCSNpp argument."""
    for name in ("in_channels", "out_channels", "image_size", "base_channels", "num_res_blocks"):
        if int(a[name]) != a[name] or a[name] < 1:
            raise ValueError(f"NCSNpp: {name} must be a positive integer, got {a[name]!r}")
    for name, allowed in (("resblock_type", RESBLOCK_KINDS), ("progressive", PROGRESSIVE),
                          ("progressive_input", PROGRESSIVE_INPUT), ("progressive_combine", Combine.METHODS),
                          ("embedding_type", EMBEDDINGS)):
        if a[name] not in allowed:
            raise ValueError(f"NCSNpp: {name} must be one of {list(allowed)}, got {a[name]!r}")
    mult = a["channel_mult"]
    if not mult or min(mult) < 1:
        raise ValueError(f"NCSNpp: channel_mult must be a non-empty list of positive integers, got {list(mult)}")
    factor = 2 ** (len(mult) - 1)
    if a["image_size"] % factor:
        raise ValueError(f"NCSNpp: image_size={a['image_size']} is not divisible by 2^(len(channel_mult) - 1) = {factor}")
    reachable = [a["image_size"] // 2**i for i in range(len(mult))]
    bad = [r for r in a["attention_resolutions"] if r not in reachable]
    if bad:
        raise ValueError(f"NCSNpp: attention_resolutions {bad} are not reached; the resolutions are {reachable}")
    widths = sorted({a["base_channels"] * m for m in mult} | {a["base_channels"]})
    if a["progressive_combine"] == "cat" and a["progressive_input"] == "input_skip":
        widths += [2 * w for w in widths]
    bad = [w for w in widths if w < 4 or w % min(w // 4, 32)]
    if bad:
        raise ValueError(f"NCSNpp: GroupNorm uses min(C // 4, 32) groups, which must divide every width; "
                         f"base_channels*channel_mult gives {bad}")
    if not 0.0 <= a["dropout"] < 1.0:
        raise ValueError(f"NCSNpp: dropout must lie in [0, 1), got {a['dropout']}")
    if a["fir"] and (len(a["fir_kernel"]) < 2 or sum(a["fir_kernel"]) == 0):
        raise ValueError(f"NCSNpp: fir_kernel must list at least 2 taps with a non-zero sum, got {list(a['fir_kernel'])}")
    if a["embedding_type"] == "fourier" and not a["fourier_scale"] > 0:
        raise ValueError(f"NCSNpp: fourier_scale must be > 0, got {a['fourier_scale']}")
    if a["base_channels"] % 2 and a["embedding_type"] == "positional":
        raise ValueError(f"NCSNpp: base_channels must be even for the positional embedding, got {a['base_channels']}")
