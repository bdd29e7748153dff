"""The image score networks of NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020), layer for
layer as the official models (ermongroup/ncsn ``CondRefineNetDilated``; ermongroup/ncsnv2
``NCSNv2``, ``NCSNv2Deeper``, ``NCSNv2Deepest``), with the same parameter counts and the same
parameter names below each block, so official checkpoints load through
:func:`diffzoo.networks.ncsn_checkpoints.convert_official_state_dict`.

Architecture (NCSN §4.1 and App. A; NCSNv2 App. B.1): a dilated RefineNet (Lin et al. 2017) —

* encoder: 3×3 conv to ``ngf`` channels, then stages of two pre-activation residual blocks
  (norm → ELU → conv, twice). The second stage halves the resolution (3×3 conv followed by 2×2
  mean pooling; 1×1 conv + pooling on the shortcut). Deeper variants halve again in further
  stages. The last two stages use dilated 3×3 convolutions (dilation 2, then 4) instead of
  down-sampling — the official blocks are declared ``resample='down'`` there but a dilated block
  keeps the resolution, and their shortcut is a dilated 3×3 conv;
* decoder: one RefineNet block per stage from the deepest up — two residual conv units (RCU) per
  input, multi-resolution fusion (norm → 3×3 conv → bilinear resize, summed), chained residual
  pooling (2 stages of norm → 5×5 pool → 3×3 conv, each added) and output RCUs (3 in the last
  block, 1 otherwise);
* head: norm → ELU → 3×3 conv to the input channels.

The two generations differ in the normalisation (``variant``):

* ``"ncsn"``: conditional instance normalisation++ indexed by the noise level ``y`` everywhere,
  including inside the RefineNet blocks, whose chained residual pooling averages (the official
  ``CondCRPBlock`` uses a 5×5 *average* pool under the name ``maxpool``);
* ``"ncsnv2"`` (CIFAR-10, CelebA 64), ``"ncsnv2_deeper"`` (LSUN 128: one more down-sampling stage,
  4 ``ngf`` at the dilated stages), ``"ncsnv2_deepest"`` (FFHQ 256: two more): unconditional
  InstanceNorm++ in the encoder and the head, *no* normalisation inside the RefineNet blocks, and
  5×5 max pooling — NCSNv2 Technique 3 removes the σ conditioning; the score is ``s_θ(x)/σ``.

With ``rescale_input`` the net first maps data in [0, 1] to ``2x − 1`` (both official models do
so unless ``data.logit_transform`` or ``data.rescaled``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .ncsn import _check_inputs, _divide_by_sigma

__all__ = ["CondInstanceNorm2dPlus", "NCSNRefineNet", "NCSN_VARIANTS"]

Variant = Literal["ncsn", "ncsnv2", "ncsnv2_deeper", "ncsnv2_deepest"]

# Per variant: channel multiplier of each encoder stage, its dilation (None: plain 3×3 convs; a
# non-dilated stage after the first halves the resolution) and whether the normalisation is
# conditioned on the level index (official ncsn/models/cond_refinenet_dilated.py, ncsnv2/models/ncsnv2.py).
NCSN_VARIANTS: dict[str, dict] = {
    "ncsn": {"mult": (1, 2, 2, 2), "dilation": (None, None, 2, 4), "conditional": True},
    "ncsnv2": {"mult": (1, 2, 2, 2), "dilation": (None, None, 2, 4), "conditional": False},
    "ncsnv2_deeper": {"mult": (1, 2, 2, 4, 4), "dilation": (None, None, None, 2, 4), "conditional": False},
    "ncsnv2_deepest": {"mult": (1, 2, 2, 2, 4, 4), "dilation": (None, None, None, None, 2, 4), "conditional": False},
}


# ---------------------------------------------------------------------------------- normalisation
class CondInstanceNorm2dPlus(nn.Module):
    """(Conditional) instance normalisation++ (NCSN App. A, eq. 9), as the official code computes it:

    ``z_k = γ_k ((x_k − μ_k)/s_k + α_k (μ_k − m)/v) + β_k``

    with ``μ_k, s_k`` the spatial mean and (biased) std of channel k, ``m`` the mean of ``{μ_k}``
    over channels and ``v² + 1e-5`` their unbiased variance (``torch.var``). The paper writes the
    α term outside the γ product (``γ_k (x_k − μ_k)/s_k + β_k + α_k (μ_k − m)/v``): the same family
    with ``α_paper = γ α``; the code's form is kept so that official weights mean the same here.
    The α term restores the channel means that instance normalisation removes.

    ``num_classes = L``: per-level ``(γ, α, β)`` in one embedding ``[L, 3C]`` (the official
    ``embed``; γ, α initialised N(1, 0.02), β at 0). ``num_classes=None``: shared parameters
    ``gamma, alpha, beta`` ``[C]`` (NCSNv2's unconditional ``InstanceNorm2dPlus``).
    """

    def __init__(self, num_features: int, num_classes: int | None = None, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.num_classes, self.eps = num_features, num_classes, eps
        if num_classes is None:
            self.alpha = nn.Parameter(1.0 + 0.02 * torch.randn(num_features))
            self.gamma = nn.Parameter(1.0 + 0.02 * torch.randn(num_features))
            self.beta = nn.Parameter(torch.zeros(num_features))
        else:
            self.embed = nn.Embedding(num_classes, 3 * num_features)
            with torch.no_grad():
                self.embed.weight[:, : 2 * num_features].normal_(1.0, 0.02)
                self.embed.weight[:, 2 * num_features:].zero_()

    def coefficients(self, y: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(γ, α, β)``, each ``[B, C]``, for the level indices ``y`` (int64 ``[B]``; unused when unconditional)."""
        if self.num_classes is None:
            return tuple(p.expand(batch, -1) for p in (self.gamma, self.alpha, self.beta))
        if y is None:
            raise ValueError(f"CondInstanceNorm2dPlus: num_classes={self.num_classes} needs the level index y (int64 [B])")
        return self.embed(y).chunk(3, dim=-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, C, H, W]``; ``y``: int64 ``[B]`` (ignored when unconditional) → ``[B, C, H, W]``."""
        gamma, alpha, beta = self.coefficients(y, x.shape[0])
        mu = x.mean(dim=(2, 3))  # μ_k, [B, C]
        m = mu.mean(dim=1, keepdim=True)
        v2 = mu.var(dim=1, keepdim=True)  # unbiased, as the official torch.var
        h = F.instance_norm(x, eps=self.eps)  # (x_k − μ_k)/s_k
        h = h + (alpha * (mu - m) / torch.sqrt(v2 + self.eps))[:, :, None, None]
        return gamma[:, :, None, None] * h + beta[:, :, None, None]


class _NoNorm(nn.Module):
    """Identity with the norm call signature: NCSNv2's RefineNet blocks have no normalisation."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return x


def _conv3x3(cin: int, cout: int, dilation: int | None = None, bias: bool = True) -> nn.Conv2d:
    d = dilation or 1
    return nn.Conv2d(cin, cout, 3, padding=d, dilation=d, bias=bias)


class _ConvMeanPool(nn.Module):
    """Conv (same padding) then 2×2 mean pooling — the down-sampling of the residual blocks."""

    def __init__(self, cin: int, cout: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(x), 2)


# ---------------------------------------------------------------------------------- encoder
class _ResidualBlock(nn.Module):
    """Pre-activation residual block: ``norm → ELU → conv1 → norm → ELU → conv2`` plus a shortcut.

    ``down`` with ``dilation=None`` halves H, W (conv2 and the 1×1 shortcut are followed by mean
    pooling); with a dilation the resolution is kept and the shortcut is a dilated 3×3 conv (the
    official blocks declared ``resample='down'`` at the dilated stages). A block that neither
    resamples nor changes the width is an identity-shortcut block.
    """

    def __init__(self, cin: int, cout: int, norm, down: bool = False, dilation: int | None = None):
        super().__init__()
        mid = cin if down else cout
        self.conv1 = _conv3x3(cin, mid, dilation)
        self.normalize2 = norm(mid)
        if down and dilation is None:
            self.conv2 = _ConvMeanPool(mid, cout, 3)
            self.shortcut = _ConvMeanPool(cin, cout, 1)
        else:
            self.conv2 = _conv3x3(mid, cout, dilation)
            if down or cin != cout:
                self.shortcut = _conv3x3(cin, cout, dilation) if dilation else nn.Conv2d(cin, cout, 1)
            else:
                self.shortcut = nn.Identity()
        self.normalize1 = norm(cin)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.elu(self.normalize1(x, y)))
        h = self.conv2(F.elu(self.normalize2(h, y)))
        return h + self.shortcut(x)


# ---------------------------------------------------------------------------------- decoder
class _ResidualConvUnits(nn.Module):
    """``n_blocks`` RefineNet residual conv units, each ``x + (norm → ELU → 3×3 conv) × 2`` (no bias)."""

    def __init__(self, ch: int, n_blocks: int, norm):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList(nn.ModuleDict({"norm": norm(ch), "conv": _conv3x3(ch, ch, bias=False)}) for _ in range(2))
            for _ in range(n_blocks)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            h = x
            for stage in block:
                h = stage["conv"](F.elu(stage["norm"](h, y)))
            x = x + h
        return x


class _MultiResolutionFusion(nn.Module):
    """``Σ_i resize(conv_i(norm_i(x_i)))`` to the output size (bilinear, corners aligned)."""

    def __init__(self, in_channels: list[int], features: int, norm):
        super().__init__()
        self.convs = nn.ModuleList(_conv3x3(c, features) for c in in_channels)
        self.norms = nn.ModuleList(norm(c) for c in in_channels)

    def forward(self, xs: list[torch.Tensor], y: torch.Tensor | None, size) -> torch.Tensor:
        out = 0
        for x, conv, norm in zip(xs, self.convs, self.norms):
            h = conv(norm(x, y))
            out = out + (h if h.shape[-2:] == size else F.interpolate(h, size=size, mode="bilinear", align_corners=True))
        return out


class _ChainedResidualPooling(nn.Module):
    """``x ← ELU(x)``; then twice ``path ← conv(pool(norm(path)))``, ``x ← x + path`` (5×5 pool, stride 1)."""

    def __init__(self, features: int, norm, pool: Literal["avg", "max"], n_stages: int = 2):
        super().__init__()
        self.convs = nn.ModuleList(_conv3x3(features, features, bias=False) for _ in range(n_stages))
        self.norms = nn.ModuleList(norm(features) for _ in range(n_stages))
        self.pool = nn.AvgPool2d(5, stride=1, padding=2) if pool == "avg" else nn.MaxPool2d(5, stride=1, padding=2)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = F.elu(x)
        path = x
        for conv, norm in zip(self.convs, self.norms):
            path = conv(self.pool(norm(path, y)))
            x = x + path
        return x


class _RefineBlock(nn.Module):
    """RefineNet block: RCUs per input → fusion (when several inputs) → chained residual pooling →
    output RCUs (three in the last block)."""

    def __init__(self, in_channels: list[int], features: int, norm, pool: str, end: bool = False):
        super().__init__()
        self.adapt_convs = nn.ModuleList(_ResidualConvUnits(c, 2, norm) for c in in_channels)
        self.output_convs = _ResidualConvUnits(features, 3 if end else 1, norm)
        if len(in_channels) > 1:
            self.msf = _MultiResolutionFusion(in_channels, features, norm)
        elif in_channels[0] != features:
            raise ValueError(f"_RefineBlock: a single input needs features == in_channels, got {in_channels[0]} != {features}")
        self.crp = _ChainedResidualPooling(features, norm, pool)

    def forward(self, xs: list[torch.Tensor], y: torch.Tensor | None, size) -> torch.Tensor:
        hs = [adapt(x, y) for x, adapt in zip(xs, self.adapt_convs)]
        h = self.msf(hs, y, size) if len(hs) > 1 else hs[0]
        return self.output_convs(self.crp(h, y), y)


# ---------------------------------------------------------------------------------- the net
class NCSNRefineNet(nn.Module):
    """NCSN / NCSNv2 score network ``s_θ(x, σ)``: images ``[B, C, H, W]`` → same shape.

    Args:
        in_channels: C.
        ngf: base width (NCSN: 128 for CIFAR-10 / CelebA, 64 for MNIST; NCSNv2: 128).
        num_classes: L, the number of noise levels — the conditional norms' rows (``variant="ncsn"``
            only; the NCSNv2 variants take ``None``).
        variant: ``"ncsn"``, ``"ncsnv2"``, ``"ncsnv2_deeper"`` or ``"ncsnv2_deepest"`` (module docstring).
        scale_by_sigma: divide the output by σ (NCSNv2 Technique 3, the official ``output / used_sigmas``);
            diffzoo's score parameterisation ``kind=scaled`` does the same outside the net.
        rescale_input: map inputs in [0, 1] to ``2x − 1`` first (the official models with
            ``logit_transform`` and ``rescaled`` off).

    Parameter counts equal the official models' (tests/unit/test_ncsn_refinenet.py): 30,117,635
    (NCSN CIFAR-10, ngf 128, L 10), 7,638,657 (NCSN MNIST, ngf 64), 29,694,083 (NCSNv2 CIFAR-10 /
    CelebA), 83,445,379 (NCSNv2 LSUN 128), 94,132,611 (NCSNv2 FFHQ 256).
    """

    def __init__(self, in_channels: int = 3, ngf: int = 128, num_classes: int | None = 10, variant: Variant = "ncsn",
                 scale_by_sigma: bool = False, rescale_input: bool = False):
        super().__init__()
        if variant not in NCSN_VARIANTS:
            raise ValueError(f"NCSNRefineNet: variant must be one of {sorted(NCSN_VARIANTS)}, got {variant!r}")
        spec = NCSN_VARIANTS[variant]
        if spec["conditional"] and num_classes is None:
            raise ValueError("NCSNRefineNet: variant='ncsn' conditions every norm on the level; set num_classes=L")
        if not spec["conditional"] and num_classes is not None:
            raise ValueError(f"NCSNRefineNet: variant={variant!r} is unconditional (NCSNv2 Technique 3); set num_classes=null "
                             "and condition by dividing by sigma (scale_by_sigma or parameterization kind=scaled)")
        self.variant, self.num_classes = variant, num_classes
        self.scale_by_sigma, self.rescale_input = scale_by_sigma, rescale_input

        def norm(ch: int) -> CondInstanceNorm2dPlus:
            return CondInstanceNorm2dPlus(ch, num_classes)

        refine_norm = norm if spec["conditional"] else (lambda ch: _NoNorm())
        pool = "avg" if spec["conditional"] else "max"
        widths = [m * ngf for m in spec["mult"]]

        self.begin_conv = nn.Conv2d(in_channels, ngf, 3, padding=1)
        self.normalizer = norm(ngf)
        self.end_conv = nn.Conv2d(ngf, in_channels, 3, padding=1)
        stages, cin = [], ngf
        for s, (cout, dil) in enumerate(zip(widths, spec["dilation"])):
            stages.append(nn.ModuleList([
                _ResidualBlock(cin, cout, norm, down=s > 0, dilation=dil),
                _ResidualBlock(cout, cout, norm, dilation=dil),
            ]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        # decoder, deepest stage first: block s fuses stage s with the block below it and outputs
        # the width of stage s − 1 (ngf at the top) — the official refine1 … refineN
        refines, below = [_RefineBlock([widths[-1]], widths[-1], refine_norm, pool)], widths[-1]
        for s in range(len(widths) - 2, -1, -1):
            features = widths[s - 1] if s > 0 else ngf
            refines.append(_RefineBlock([widths[s], below], features, refine_norm, pool, end=s == 0))
            below = features
        self.refines = nn.ModuleList(refines)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, C, H, W]``; ``y``: int64 ``[B]`` level index (``"ncsn"``); ``sigma``: float ``[B]``
        (``scale_by_sigma``) → ``[B, C, H, W]``."""
        _check_inputs(self, x, y, sigma)
        h = self.begin_conv(2 * x - 1 if self.rescale_input else x)
        feats = []
        for stage in self.stages:
            for block in stage:
                h = block(h, y)
            feats.append(h)
        r = self.refines[0]([feats[-1]], y, feats[-1].shape[-2:])
        for refine, f in zip(self.refines[1:], reversed(feats[:-1])):
            r = refine([f, r], y, f.shape[-2:])
        out = self.end_conv(F.elu(self.normalizer(r, y)))
        return _divide_by_sigma(out, sigma) if self.scale_by_sigma else out

