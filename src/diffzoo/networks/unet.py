"""The DDPM / ADM U-Net, a plain image-to-image network ``f(x, t, y)``.

The defaults are Ho et al. 2020's CIFAR-10 network (App. B; the TF code
``diffusion_tf/models/unet.py``): 35.7M parameters. Keyword options add the architecture
changes of Dhariwal & Nichol 2021 (ADM, §3): more attention heads, AdaGN ("scale-shift
norm"), BigGAN-style resampling residual blocks, and a class embedding. The network knows
nothing of noise schedules: ``t`` is whatever noise-level value the caller feeds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import GROUPNORM_EPS, AttentionBlock, GroupNorm32, _norm, _zero
from ..errors import ConfigError
from .embeddings import sinusoidal_embedding
from .text_attention import ContextAttentionBlock, CrossAttentionBlock, check_text_args

__all__ = ["UNet", "ResBlock", "AttentionBlock", "Downsample", "Upsample", "EmbedSequential", "build_encoder",
           "GroupNorm32", "GROUPNORM_EPS"]


def _xavier(layer: nn.Module) -> nn.Module:
    # DDPM nn.default_init: variance_scaling(1, "fan_avg", "uniform") = Xavier-uniform; zero bias.
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Downsample(nn.Module):
    """Strided 3×3 conv, ``[B, C, H, W] → [B, C, H/2, W/2]``, with TF "SAME" padding as in
    DDPM (for even sizes: one zero row/column at the bottom/right only)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = _xavier(nn.Conv2d(channels, channels, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 conv, ``[B, C, H, W] → [B, C, 2H, 2W]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = _xavier(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Residual block conditioned on an embedding ``emb`` (DDPM ``resnet_block``).

    ``h = conv1(SiLU(GN(x))) + W·SiLU(emb)``, then ``conv2(dropout(SiLU(GN(h))))`` added to
    ``x`` (through a 1×1 conv when the width changes). With ``scale_shift`` (ADM's AdaGN,
    Dhariwal & Nichol 2021 §3): ``[s, b] = W·SiLU(emb)`` and ``GN(h)·(1 + s) + b`` replaces
    ``GN(h + W·SiLU(emb))``. With ``resample`` (ADM's BigGAN-style blocks) both branches are
    average-pooled ("down") or nearest-upsampled ("up") before ``conv1``.

    Shapes: ``x`` ``[B, in_ch, H, W]``, ``emb`` ``[B, emb_dim]`` → ``[B, out_ch, H', W']``.
    """

    RESAMPLE = (None, "up", "down")

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        *,
        dropout: float = 0.0,
        num_groups: int = 32,
        scale_shift: bool = False,
        resample: Literal["up", "down"] | None = None,
    ):
        super().__init__()
        if resample not in self.RESAMPLE:
            raise ValueError(f"ResBlock: resample must be one of {self.RESAMPLE}, got {resample!r}")
        self.scale_shift = scale_shift
        self.resample = {
            None: nn.Identity(),
            "up": nn.Upsample(scale_factor=2.0, mode="nearest"),
            "down": nn.AvgPool2d(2),
        }[resample]
        self.norm1 = _norm(in_ch, num_groups)
        self.conv1 = _xavier(nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.emb_proj = _xavier(nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch))
        self.norm2 = _norm(out_ch, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else _xavier(nn.Conv2d(in_ch, out_ch, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.resample(F.silu(self.norm1(x))))
        x = self.resample(x)
        e = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class EmbedSequential(nn.Sequential):
    """A sequence of layers in which the :class:`ResBlock` ones also receive ``emb`` and the text
    attention ones (``takes_context``, :mod:`diffzoo.networks.text_attention`) the text context."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif getattr(layer, "takes_context", False):
                x = layer(x, context, context_mask)
            else:
                x = layer(x)
        return x


class Encoder(NamedTuple):
    """The downsampling half of the U-Net, as built by :func:`build_encoder`."""

    input_conv: nn.Conv2d
    down: nn.ModuleList          # EmbedSequential stages, one per skip connection after the first
    skip_channels: tuple[int, ...]  # width of every stage's output, input_conv first
    channels: int                # width at the lowest resolution
    resolution: int              # side of the lowest-resolution feature map


def build_encoder(
    in_channels: int,
    image_size: int,
    base_channels: int,
    channel_mult: Sequence[int],
    num_res_blocks: int,
    attention_resolutions: Sequence[int],
    resblock_updown: bool,
    block: Callable[..., ResBlock],
    attention: Callable[[int], AttentionBlock],
    cross_attention: Callable[[int], nn.Module] | None = None,
    cross_attention_resolutions: Sequence[int] = (),
) -> Encoder:
    """conv_in, then per level ``num_res_blocks`` ResBlocks (each followed by attention at the
    resolutions in ``attention_resolutions``) and a downsampler (a strided conv, or a "down"
    ResBlock with ``resblock_updown``) between levels — the U-Net's encoder (DDPM App. B; ADM's
    ``input_blocks``), shared with the noise-aware classifier (ADM §4.1). ``block(cin, cout,
    resample=None)`` and ``attention(ch)`` make the layers, so both nets configure them alike;
    ``cross_attention(ch)`` (Imagen) follows at ``cross_attention_resolutions``."""
    ch, res = base_channels, image_size
    input_conv = _xavier(nn.Conv2d(in_channels, ch, 3, padding=1))
    skip_channels = [ch]
    down = nn.ModuleList()
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers = [block(ch, base_channels * mult)]
            ch = base_channels * mult
            if res in attention_resolutions:
                layers.append(attention(ch))
            if res in cross_attention_resolutions:
                layers.append(cross_attention(ch))
            down.append(EmbedSequential(*layers))
            skip_channels.append(ch)
        if level < len(channel_mult) - 1:
            layer = block(ch, ch, "down") if resblock_updown else Downsample(ch)
            down.append(EmbedSequential(layer))
            skip_channels.append(ch)
            res //= 2
    return Encoder(input_conv, down, tuple(skip_channels), ch, res)


class UNet(nn.Module):
    """DDPM U-Net (Ho et al. 2020, App. B) with the ADM options (Dhariwal & Nichol 2021, §3).

    Layout: conv_in; per resolution level ``num_res_blocks`` ResBlocks (each followed by
    attention when the resolution is in ``attention_resolutions``) and a downsampler;
    a middle ResBlock–attention–ResBlock; per level ``num_res_blocks + 1`` ResBlocks fed the
    concatenated skip activations, then an upsampler; GN–SiLU–conv_out. The noise level
    enters as ``t ↦ Linear(SiLU(Linear(sinusoidal(t))))`` of width ``4·base_channels``.

    Args:
        in_channels, out_channels: image channels in and out (``out_channels = 2·C`` for a
            learned variance).
        image_size: side of the training images; the input's sides must be divisible by
            ``2^(len(channel_mult) − 1)``.
        base_channels: width at full resolution; level ``i`` has ``base_channels·channel_mult[i]``.
        channel_mult: width multipliers, one per resolution level.
        num_res_blocks: ResBlocks per level on the way down.
        attention_resolutions: feature-map sides (e.g. 16 for 16×16) that get self-attention.
        dropout: dropout before the second conv of every ResBlock.
        num_heads: attention heads (ignored when ``num_head_channels`` is given).
        num_head_channels: fixed width per head (ADM: 64); heads = channels / this.
        num_groups: GroupNorm groups; must divide every width.
        use_scale_shift_norm: ADM's AdaGN in the ResBlocks.
        resblock_updown: resample with ResBlocks (ADM, BigGAN) instead of (strided) convs.
        num_classes: if set, a learned class embedding is added to the time embedding; index
            ``num_classes`` is the learned *null* class for classifier-free guidance, and
            ``y=None`` means null for the whole batch.
        use_checkpoint: recompute block activations in the backward pass (saves memory).
        text_dim: width ``d_text`` of a text context (None: no text conditioning). The pooled
            text vector is projected and added to the time embedding (GLIDE ``transformer_proj``).
        text_conditioning: ``"glide"`` (the context's keys / values joined to every attention
            block's), ``"cross_attention"`` (Imagen: cross-attention blocks at
            ``cross_attention_resolutions``, LayerNorm on the text states) or ``"pooled"`` (the pooled
            vector only; the token states are not attended); see :mod:`diffzoo.networks.text_attention`.
        cross_attention_resolutions: feature-map sides that get cross-attention (``cross_attention``).
        text_encoder_dim: width of the text encoder's states when it differs from ``text_dim``: a
            learned linear map takes token states and pooled vector from it to ``text_dim`` first
            (imagen-pytorch ``text_to_cond``: T5-XXL's 4096 → the U-Net's 512). None: the encoder
            emits ``text_dim`` itself.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        image_size: int = 32,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        num_heads: int = 1,
        num_head_channels: int | None = None,
        num_groups: int = 32,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        text_dim: int | None = None,
        text_conditioning: str = "glide",
        cross_attention_resolutions: Sequence[int] = (),
        text_encoder_dim: int | None = None,
    ):
        super().__init__()
        cross_attention_resolutions = tuple(int(r) for r in cross_attention_resolutions)
        check_text_args(text_dim, text_conditioning, cross_attention_resolutions, image_size, len(channel_mult))
        self.text_dim, self.text_conditioning = text_dim, text_conditioning
        channel_mult = tuple(int(m) for m in channel_mult)
        attention_resolutions = tuple(int(r) for r in attention_resolutions)
        _check_args(
            in_channels=in_channels, out_channels=out_channels, image_size=image_size,
            base_channels=base_channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions, dropout=dropout, num_heads=num_heads,
            num_head_channels=num_head_channels, num_groups=num_groups, num_classes=num_classes,
        )
        self.in_channels, self.out_channels, self.image_size = in_channels, out_channels, image_size
        self.base_channels, self.num_classes = base_channels, num_classes
        self.use_checkpoint = use_checkpoint
        self.downsampling_factor = 2 ** (len(channel_mult) - 1)

        emb_dim = self.embedding_dim = 4 * base_channels  # width of the time embedding (and of added_emb)
        self.time_mlp = nn.Sequential(
            _xavier(nn.Linear(base_channels, emb_dim)), nn.SiLU(), _xavier(nn.Linear(emb_dim, emb_dim))
        )
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.text_pool_proj = nn.Linear(text_dim, emb_dim) if text_dim else None  # GLIDE transformer_proj
        if text_encoder_dim is not None and not text_dim:
            raise ConfigError("net.text_encoder_dim is set but net.text_dim is not: set net.text_dim too")
        self.text_encoder_dim = int(text_encoder_dim) if text_encoder_dim else text_dim
        self.text_in_proj = (nn.Linear(self.text_encoder_dim, text_dim)
                             if text_dim and self.text_encoder_dim != text_dim else None)
        glide = bool(text_dim) and text_conditioning == "glide"
        xattn_res = cross_attention_resolutions if text_dim and text_conditioning == "cross_attention" else ()

        def block(cin: int, cout: int, resample: str | None = None) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout=dropout, num_groups=num_groups,
                            scale_shift=use_scale_shift_norm, resample=resample)

        def attention(ch: int) -> AttentionBlock:
            heads = ch // num_head_channels if num_head_channels else num_heads
            return ContextAttentionBlock(ch, heads, num_groups, text_dim) if glide else AttentionBlock(ch, heads, num_groups)

        def cross_attention(ch: int) -> CrossAttentionBlock:
            heads = ch // num_head_channels if num_head_channels else num_heads
            return CrossAttentionBlock(ch, heads, num_groups, text_dim)

        enc = build_encoder(in_channels, image_size, base_channels, channel_mult, num_res_blocks,
                            attention_resolutions, resblock_updown, block, attention, cross_attention, xattn_res)
        self.input_conv, self.down = enc.input_conv, enc.down
        ch, res, skip_channels = enc.channels, enc.resolution, list(enc.skip_channels)

        mid_x = [cross_attention(ch)] if res in xattn_res else []
        self.mid = EmbedSequential(block(ch, ch), attention(ch), *mid_x, block(ch, ch))

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [block(ch + skip_channels.pop(), base_channels * mult)]
                ch = base_channels * mult
                if res in attention_resolutions:
                    layers.append(attention(ch))
                if res in xattn_res:
                    layers.append(cross_attention(ch))
                if level > 0 and i == num_res_blocks:
                    layers.append(block(ch, ch, "up") if resblock_updown else Upsample(ch))
                    res *= 2
                self.up.append(EmbedSequential(*layers))

        self.out = nn.Sequential(
            _norm(ch, num_groups), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    @property
    def null_class(self) -> int | None:
        """The label index meaning "no class" (classifier-free guidance), or None."""
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None, added_emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, in_channels, H, W]``, ``t`` float ``[B]`` (or a scalar), ``y`` int64
        ``[B]`` labels in ``0 … num_classes`` (``num_classes`` = null) → ``[B, out_channels, H, W]``.
        With ``text_dim``: ``context`` ``[B, L, text_dim]`` token states, ``context_mask`` bool
        ``[B, L]`` (True = attended; None = all) and ``pooled`` ``[B, text_dim]``; all None = no text.
        ``added_emb`` ``[B, 4·base_channels]``: a conditioning vector that a wrapping network computed
        (an augmentation level, a CLIP image embedding), added to the time embedding like the class
        embedding (the extension point of conditioned variants; see :attr:`embedding_dim`)."""
        t = self._check_inputs(x, t, y)
        if (context is not None or pooled is not None) and self.text_pool_proj is None:
            raise ValueError("UNet: got a text context but the network was built with text_dim=None")
        if self.text_in_proj is not None:  # encoder width -> text_dim (imagen-pytorch text_to_cond)
            context = self.text_in_proj(context) if context is not None else None
            pooled = self.text_in_proj(pooled) if pooled is not None else None
        # The embedding MLP runs in float32 even under mixed precision (as ADM keeps
        # ``time_embed`` in fp32): sin/cos of large t lose their phase in bf16.
        with torch.autocast(x.device.type, enabled=False):
            param_dtype = self.time_mlp[0].weight.dtype  # float32 unless the whole net was cast
            emb = self.time_mlp(sinusoidal_embedding(t.to(param_dtype), self.base_channels).to(param_dtype))
            if self.class_embed is not None:
                if y is None:
                    y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
                emb = emb + self.class_embed(y)
            if pooled is not None:  # GLIDE: emb + transformer_proj(xf_out[:, -1])
                emb = emb + self.text_pool_proj(pooled.to(param_dtype))
            if added_emb is not None:
                if added_emb.shape != emb.shape:
                    raise ValueError(f"UNet: added_emb has shape {tuple(added_emb.shape)}, expected {tuple(emb.shape)}")
                emb = emb + added_emb.to(param_dtype)
        emb = emb.to(x.dtype)
        text = (context, context_mask)

        h = self.input_conv(x)
        skips = [h]
        for stage in self.down:
            h = self._run(stage, h, emb, *text)
            skips.append(h)
        h = self._run(self.mid, h, emb, *text)
        for stage in self.up:
            h = self._run(stage, torch.cat([h, skips.pop()], dim=1), emb, *text)
        return self.out(h)

    def _run(self, stage: EmbedSequential, h: torch.Tensor, emb: torch.Tensor, *text) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(stage, h, emb, *text, use_reentrant=False)
        return stage(h, emb, *text)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet: x must have shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        f = self.downsampling_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"UNet: image sides {tuple(x.shape[2:])} must be divisible by {f} = 2^(len(channel_mult) - 1)"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"UNet: t must have shape [{x.shape[0]}], got {tuple(t.shape)}")
        if y is not None and self.class_embed is None:
            raise ValueError("UNet: got class labels y but the network was built with num_classes=None")
        if y is not None and y.shape != (x.shape[0],):
            raise ValueError(f"UNet: y must have shape [{x.shape[0]}], got {tuple(y.shape)}")
        return t


def _check_args(
    *, in_channels, out_channels, image_size, base_channels, channel_mult, num_res_blocks,
    attention_resolutions, dropout, num_heads, num_head_channels, num_groups, num_classes,
) -> None:
    """Raise a ValueError naming the offending UNet argument."""
    for name, value in [("in_channels", in_channels), ("out_channels", out_channels),
                        ("image_size", image_size), ("base_channels", base_channels),
                        ("num_res_blocks", num_res_blocks), ("num_heads", num_heads),
                        ("num_groups", num_groups)]:
        if int(value) != value or value < 1:
            raise ValueError(f"UNet: {name} must be a positive integer, got {value!r}")
    if not channel_mult or min(channel_mult) < 1:
        raise ValueError(
            f"UNet: channel_mult must be a non-empty list of positive integers, got {list(channel_mult)}"
        )
    factor = 2 ** (len(channel_mult) - 1)
    if image_size % factor:
        raise ValueError(
            f"UNet: image_size={image_size} is not divisible by 2^(len(channel_mult) - 1) = {factor} "
            f"(channel_mult={list(channel_mult)})"
        )
    reachable = [image_size // 2**i for i in range(len(channel_mult))]
    bad = [r for r in attention_resolutions if r not in reachable]
    if bad:
        raise ValueError(
            f"UNet: attention_resolutions {bad} are not reached; with image_size={image_size} and "
            f"{len(channel_mult)} levels the resolutions are {reachable}"
        )
    widths = sorted({base_channels * m for m in channel_mult})
    if any(w % num_groups for w in widths):
        raise ValueError(
            f"UNet: num_groups={num_groups} must divide every width base_channels*channel_mult = {widths}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"UNet: dropout must lie in [0, 1), got {dropout}")
    middle_width = base_channels * channel_mult[-1]  # the middle block always has attention
    attn_widths = sorted({base_channels * channel_mult[reachable.index(r)] for r in attention_resolutions}
                         | {middle_width})
    if num_head_channels is not None:
        if int(num_head_channels) != num_head_channels or num_head_channels < 1 or any(
            w % num_head_channels for w in attn_widths
        ):
            raise ValueError(
                f"UNet: num_head_channels={num_head_channels} must divide every attention width {attn_widths}"
            )
    elif any(w % num_heads for w in attn_widths):
        raise ValueError(f"UNet: num_heads={num_heads} must divide every attention width {attn_widths}")
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(f"UNet: num_classes must be a positive integer or null, got {num_classes!r}")
