"""Layers of the DDPM++ / NCSN++ networks (Song et al. 2021, Score SDE, App. H).

* FIR resampling (StyleGAN2's ``upfirdn2d``; Karras et al. 2020, App. B; Zhang 2019): images are
  up-sampled by zero insertion and low-pass filtered with the separable kernel ``k ⊗ k``
  (Score SDE: ``k = [1, 3, 3, 1]``), normalised to gain ``factor²`` (up) or 1 (down), or
  filtered then decimated; the fused conv variants pad once.
* :class:`Upsample` / :class:`Downsample` — plain (nearest / average pool / strided conv) or FIR.
* :class:`ResBlockPP` — DDPM's residual block (``"ddpm"``) or BigGAN's (``"biggan"``, which
  resamples inside the block; Brock et al. 2019), with the residual sum rescaled by ``1/√2``.
* :class:`AttentionBlockPP` — DDPM's single-head self-attention, optionally skip-rescaled.
* :class:`Combine` — the "input_skip" merge of the progressive input pyramid.

Init: DDPM's ``default_init`` (``variance_scaling(scale, "fan_avg", "uniform")``, i.e. Xavier-uniform
with gain √scale, zero bias); the last layer of every residual branch starts at zero (``init_scale=0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "default_init", "fir_kernel_2d", "upfirdn2d", "fir_upsample", "fir_downsample",
    "fir_upsample_conv", "fir_conv_downsample", "Upsample", "Downsample", "ResBlockPP",
    "AttentionBlockPP", "Combine", "group_norm", "SKIP_SCALE",
]

SKIP_SCALE = 1 / math.sqrt(2.0)  # Score SDE App. H: "rescale skip connections by 1/√2"
RESBLOCK_KINDS = ("ddpm", "biggan")


def default_init(layer: nn.Module, scale: float = 1.0) -> nn.Module:
    """DDPM ``default_init(scale)``: ``U(±√(3·scale/fan_avg))`` weights (= Xavier-uniform with
    gain √scale), zero bias; ``scale = 0`` gives zero weights (the code uses 1e-10)."""
    if scale == 0:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.xavier_uniform_(layer.weight, gain=math.sqrt(scale))
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def conv3x3(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    return default_init(nn.Conv2d(in_ch, out_ch, 3, padding=1), init_scale)


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    return default_init(nn.Conv2d(in_ch, out_ch, 1), init_scale)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with ``min(C // 4, 32)`` groups and eps 1e-6, as in the Score SDE code."""
    return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6)


# ----------------------------------------------------------------------------- FIR resampling
def fir_kernel_2d(kernel: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """The separable 2-D filter ``k kᵀ / (Σk)² · gain`` (float32 ``[K, K]``): a constant image
    is scaled by exactly ``gain``."""
    taps = [float(v) for v in kernel]
    if not taps or sum(taps) == 0:
        raise ValueError(f"fir_kernel must be a non-empty 1-D list with a non-zero sum, got {list(kernel)}")
    k = torch.tensor(taps, dtype=torch.float32) / sum(taps)
    return torch.outer(k, k) * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Up-sample by zero insertion, zero-pad, convolve with ``kernel``, keep every ``down``-th
    pixel (StyleGAN2 ``upfirdn2d``). ``x`` ``[B, C, H, W]``, ``kernel`` ``[K, K]`` →
    ``[B, C, (H·up + pad₀ + pad₁ − K)//down + 1, …]``; each channel is filtered separately."""
    B, C, H, W = x.shape
    if up > 1:  # x[i, j] goes to (up·i, up·j); the other up² − 1 pixels of each cell are zero
        x = F.pad(x.reshape(B, C, H, 1, W, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(B, C, H * up, W * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    K = kernel.shape[-1]
    # a true convolution (kernel flipped; Score SDE's kernels are symmetric anyway)
    w = kernel.flip([0, 1]).to(x).expand(C, 1, K, K)
    return F.conv2d(x, w, stride=down, groups=C)


def fir_upsample(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR ×``factor`` up-sampling ``[B, C, H, W] → [B, C, factor·H, factor·W]``; ``kernel`` from
    :func:`fir_kernel_2d` with ``gain = factor²`` (zero insertion keeps 1/factor² of the mass)."""
    p = kernel.shape[-1] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def fir_downsample(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR ÷``factor`` down-sampling ``[B, C, H, W] → [B, C, H/factor, W/factor]`` (gain-1 kernel)."""
    p = kernel.shape[-1] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def fir_upsample_conv(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR up-sampling fused with a 3×3 conv ``weight`` ``[O, C, 3, 3]`` (no bias), padding once:
    zero insertion, the conv over the full support, then the FIR filter (all linear and
    shift-invariant, so away from the border this is ``conv(fir_upsample(x))``).
    ``[B, C, H, W] → [B, O, factor·H, factor·W]``."""
    B, C, H, W = x.shape
    kc = weight.shape[-1]
    z = F.pad(x.reshape(B, C, H, 1, W, 1), (0, factor - 1, 0, 0, 0, factor - 1)).reshape(B, C, H * factor, W * factor)
    # "full" conv: (H − 1)·factor + kc outputs, as the transposed conv of the StyleGAN2 code
    h = F.conv2d(F.pad(z, (kc - 1, kc - factor, kc - 1, kc - factor)), weight)
    p = (kernel.shape[-1] - factor) - (kc - 1)
    return upfirdn2d(h, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def fir_conv_downsample(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """A 3×3 conv ``weight`` ``[O, C, 3, 3]`` (no bias) fused with FIR down-sampling, padding once:
    FIR filter, then the conv with stride ``factor`` (away from the border:
    ``fir_downsample(conv(x))``). ``[B, C, H, W] → [B, O, H/factor, W/factor]``."""
    kc = weight.shape[-1]
    p = (kernel.shape[-1] - factor) + (kc - 1)
    return F.conv2d(upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2)), weight, stride=factor)


class _FIR(nn.Module):
    """Holds the normalised FIR kernel as a (non-persistent) buffer."""

    def __init__(self, fir_kernel: Sequence[float], gain: float):
        super().__init__()
        self.fir_kernel = tuple(float(v) for v in fir_kernel)
        self.register_buffer("kernel", fir_kernel_2d(self.fir_kernel, gain), persistent=False)


class Upsample(_FIR):
    """×2 up-sampling (Score SDE ``layerspp.Upsample``): nearest (+ 3×3 conv) or, with ``fir``,
    FIR (fused with the 3×3 conv when ``with_conv``). ``[B, in_ch, H, W] → [B, out_ch, 2H, 2W]``."""

    def __init__(self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__(fir_kernel, gain=4.0)
        out_ch = out_ch or in_ch
        if not with_conv and out_ch != in_ch:
            raise ValueError(f"Upsample: changing the width ({in_ch} → {out_ch}) needs with_conv=True")
        self.fir, self.with_conv = fir, with_conv
        self.conv = conv3x3(in_ch, out_ch) if with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fir:
            h = F.interpolate(x, scale_factor=2.0, mode="nearest")
            return self.conv(h) if self.conv is not None else h
        if self.conv is None:
            return fir_upsample(x, self.kernel)
        return fir_upsample_conv(x, self.conv.weight, self.kernel) + self.conv.bias[:, None, None]


class Downsample(_FIR):
    """÷2 down-sampling (Score SDE ``layerspp.Downsample``): average pooling, a stride-2 3×3 conv
    with TF "SAME" padding, or with ``fir`` FIR (fused with the conv when ``with_conv``).
    ``[B, in_ch, H, W] → [B, out_ch, H/2, W/2]``."""

    def __init__(self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__(fir_kernel, gain=1.0)
        out_ch = out_ch or in_ch
        if not with_conv and out_ch != in_ch:
            raise ValueError(f"Downsample: changing the width ({in_ch} → {out_ch}) needs with_conv=True")
        self.fir, self.with_conv = fir, with_conv
        self.conv = default_init(nn.Conv2d(in_ch, out_ch, 3, stride=2)) if with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fir:
            if self.conv is None:
                return F.avg_pool2d(x, 2)
            return self.conv(F.pad(x, (0, 1, 0, 1)))  # TF "SAME" for even sizes: bottom/right only
        if self.conv is None:
            return fir_downsample(x, self.kernel)
        return fir_conv_downsample(x, self.conv.weight, self.kernel) + self.conv.bias[:, None, None]


class ResBlockPP(_FIR):
    """Residual block of DDPM++ / NCSN++ (Score SDE ``ResnetBlockDDPMpp`` / ``ResnetBlockBigGANpp``).

    ``h = conv₀(resample(SiLU(GN(x)))) + Dense(SiLU(emb))``, ``h = conv₁(dropout(SiLU(GN(h))))``
    (``conv₁`` zero-initialised), output ``(skip(resample(x)) + h)·s`` with ``s = 1/√2`` under
    ``skip_rescale`` (else 1). ``kind="ddpm"``: no resampling, the skip is a 1×1 conv (init scale 0.1)
    when the width changes. ``kind="biggan"``: ``resample`` ∈ {None, "up", "down"} — nearest /
    average pooling, or FIR with ``fir`` — applied to both branches; the skip is a 1×1 conv whenever
    the width or the size changes.

    Shapes: ``x`` ``[B, in_ch, H, W]``, ``emb`` ``[B, emb_dim]`` → ``[B, out_ch, H', W']``.
    """

    def __init__(self, in_ch: int, out_ch: int | None, emb_dim: int, *, kind: Literal["ddpm", "biggan"] = "biggan",
                 resample: Literal["up", "down"] | None = None, dropout: float = 0.1, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True):
        super().__init__(fir_kernel, gain=4.0 if resample == "up" else 1.0)
        out_ch = out_ch or in_ch
        if kind not in RESBLOCK_KINDS:
            raise ValueError(f"ResBlockPP: kind must be one of {RESBLOCK_KINDS}, got {kind!r}")
        if resample not in (None, "up", "down") or (kind == "ddpm" and resample is not None):
            raise ValueError(f"ResBlockPP: resample must be None, 'up' or 'down' (None for kind='ddpm'), got {resample!r}")
        self.resample, self.fir = resample, fir
        self.scale = SKIP_SCALE if skip_rescale else 1.0
        self.norm0 = group_norm(in_ch)
        self.conv0 = conv3x3(in_ch, out_ch)
        self.dense = default_init(nn.Linear(emb_dim, out_ch))
        self.norm1 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv3x3(out_ch, out_ch, init_scale=0.0)
        if kind == "ddpm":
            self.skip = conv1x1(in_ch, out_ch, init_scale=0.1) if in_ch != out_ch else None  # DDPM's NIN
        else:
            self.skip = conv1x1(in_ch, out_ch) if (in_ch != out_ch or resample) else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return fir_upsample(x, self.kernel) if self.fir else F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.resample == "down":
            return fir_downsample(x, self.kernel) if self.fir else F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(self._resample(F.silu(self.norm0(x))))
        h = h + self.dense(F.silu(emb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        x = self._resample(x)
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * self.scale


class AttentionBlockPP(nn.Module):
    """Single-head self-attention over the ``H·W`` positions (Score SDE ``AttnBlockpp``, from
    DDPM): ``(x + proj(softmax(QKᵀ/√C)V))·s`` with ``Q, K, V`` 1×1 convs of ``GN(x)`` (init scale
    0.1), ``proj`` zero-initialised and ``s = 1/√2`` under ``skip_rescale``.
    Shapes: ``[B, C, H, W] → [B, C, H, W]``."""

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.scale = SKIP_SCALE if skip_rescale else 1.0
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        for w in self.qkv.weight.data.chunk(3):  # three separate C→C layers in the original
            nn.init.xavier_uniform_(w, gain=math.sqrt(0.1))
        nn.init.zeros_(self.qkv.bias)
        self.proj_out = conv1x1(channels, channels, init_scale=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2).unbind(dim=1)
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(QKᵀ/√C)V, [B, H·W, C]
        return (x + self.proj_out(h.transpose(-1, -2).reshape(B, C, H, W))) * self.scale


class Combine(nn.Module):
    """Merge the down-sampled input image into the features (progressive input "input_skip",
    Score SDE ``layerspp.Combine``): ``cat([conv1×1(x), h])`` or ``conv1×1(x) + h``.
    ``x`` ``[B, dim1, H, W]``, ``h`` ``[B, dim2, H, W]`` → ``[B, 2·dim2 or dim2, H, W]``."""

    METHODS = ("sum", "cat")

    def __init__(self, dim1: int, dim2: int, method: Literal["sum", "cat"] = "sum"):
        super().__init__()
        if method not in self.METHODS:
            raise ValueError(f"Combine: method must be one of {self.METHODS}, got {method!r}")
        self.method = method
        self.conv = conv1x1(dim1, dim2)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.cat([y, h], dim=1) if self.method == "cat" else y + h
