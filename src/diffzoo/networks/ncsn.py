"""Noise-conditional score networks (Song & Ermon 2019, NCSN; 2020, NCSNv2). Plain nn.Modules: no
noise levels live here; the caller passes the level index ``y`` and/or the value ``σ``.

* :class:`NCSNMLP` — an MLP score net for 2-D (or any flat) data, conditioned on the σ index by
  a per-level scale and shift of each hidden layer.
* :class:`NCSNRefineNet` — a compact RefineNet-style image net (NCSN §3.1 and Appendix A:
  dilated RefineNet with conditional instance normalisation++, ELU), ``ngf`` channels.

Both offer the two NCSN generations as options:

* NCSN: ``num_classes = L`` — normalisation/affine parameters indexed by the level ``y``;
* NCSNv2 (Technique 3, §3.3): ``num_classes=None, scale_by_sigma=True`` — an unconditional
  net ``s_θ(x)`` whose output is divided by σ, ``s_θ(x, σ) = s_θ(x) / σ``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CondInstanceNorm2dPlus", "NCSNMLP", "NCSNRefineNet"]


def _check_inputs(module: nn.Module, x: torch.Tensor, y, sigma):
    if module.num_classes is not None:
        if y is None:
            raise ValueError(f"{type(module).__name__}: num_classes={module.num_classes} needs the level index y (int64 [B])")
        if y.shape != (x.shape[0],):
            raise ValueError(f"{type(module).__name__}: y must have shape [{x.shape[0]}], got {tuple(y.shape)}")
    if module.scale_by_sigma:
        if sigma is None:
            raise ValueError(f"{type(module).__name__}: scale_by_sigma=True needs sigma (float [B])")
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"{type(module).__name__}: sigma must have shape [{x.shape[0]}], got {tuple(sigma.shape)}")


def _divide_by_sigma(out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    # NCSNv2 Technique 3: s_θ(x, σ) = s_θ(x) / σ
    return out / sigma.to(out.dtype).reshape(-1, *([1] * (out.ndim - 1)))


# ---------------------------------------------------------------------------------- 2-D MLP
class NCSNMLP(nn.Module):
    """Score MLP ``s_θ(x, σ)`` for flat data ``[B, D]`` → ``[B, D]``.

    Each hidden layer is ``softplus(g_y ⊙ (W h + b) + c_y)`` with per-level gain ``g_y`` and shift
    ``c_y`` (initialised to 1 and 0) when ``num_classes`` is set (NCSN's conditioning on the σ
    index), a plain ``softplus(W h + b)`` otherwise (Softplus as in NCSN's toy nets).

    Args:
        dim: data dimension D.
        hidden: width; num_layers: number of hidden layers.
        num_classes: L, the number of noise levels (``None``: unconditional).
        scale_by_sigma: divide the output by σ (NCSNv2 Technique 3).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, num_layers: int = 3, num_classes: int | None = None,
                 scale_by_sigma: bool = False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"NCSNMLP: num_layers must be >= 1, got {num_layers}")
        self.num_classes, self.scale_by_sigma = num_classes, scale_by_sigma
        widths = [dim] + [hidden] * num_layers
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(hidden, dim)
        if num_classes is not None:
            self.gains = nn.ModuleList(nn.Embedding(num_classes, hidden) for _ in range(num_layers))
            self.shifts = nn.ModuleList(nn.Embedding(num_classes, hidden) for _ in range(num_layers))
            for g, c in zip(self.gains, self.shifts):
                nn.init.ones_(g.weight)
                nn.init.zeros_(c.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, D]``; ``y``: int64 ``[B]`` level index; ``sigma``: float ``[B]`` → ``[B, D]``."""
        _check_inputs(self, x, y, sigma)
        h = x
        for k, lin in enumerate(self.linears):
            h = lin(h)
            if self.num_classes is not None:
                h = self.gains[k](y) * h + self.shifts[k](y)
            h = F.softplus(h)
        out = self.out(h)
        return _divide_by_sigma(out, sigma) if self.scale_by_sigma else out


# ---------------------------------------------------------------------------------- image net
class CondInstanceNorm2dPlus(nn.Module):
    """Conditional instance normalisation++ (NCSN Appendix A):

    ``z_k = γ[y, k] (x_k − μ_k)/s_k + β[y, k] + α[y, k] (μ_k − m)/v``

    where ``μ_k, s_k`` are the spatial mean and std of channel k and ``m, v`` the mean and std
    of ``{μ_k}`` over channels (the α term restores the channel means that instance norm
    removes). With ``num_classes=None`` the parameters are shared (NCSNv2's InstanceNorm++).
    """

    def __init__(self, num_features: int, num_classes: int | None = None, eps: float = 1e-5):
        super().__init__()
        self.num_classes, self.eps = num_classes, eps
        rows = 1 if num_classes is None else num_classes
        self.gamma = nn.Parameter(1.0 + 0.02 * torch.randn(rows, num_features))
        self.alpha = nn.Parameter(1.0 + 0.02 * torch.randn(rows, num_features))
        self.beta = nn.Parameter(torch.zeros(rows, num_features))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, C, H, W]``; ``y``: int64 ``[B]`` (ignored when unconditional)."""
        mu = x.mean(dim=(2, 3), keepdim=True)  # μ_k
        var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        m = mu.mean(dim=1, keepdim=True)
        v2 = mu.var(dim=1, keepdim=True, unbiased=False)
        idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if self.num_classes is None else y
        g, a, b = (p[idx][:, :, None, None] for p in (self.gamma, self.alpha, self.beta))
        return g * (x - mu) / torch.sqrt(var + self.eps) + b + a * (mu - m) / torch.sqrt(v2 + self.eps)


class _CondResBlock(nn.Module):
    """norm → ELU → conv → norm → ELU → conv (+ shortcut); ``down`` halves H, W by mean pooling,
    ``dilation`` widens the receptive field without down-sampling (dilated RefineNet)."""

    def __init__(self, cin: int, cout: int, num_classes, down: bool = False, dilation: int = 1):
        super().__init__()
        self.down = down
        self.norm1 = CondInstanceNorm2dPlus(cin, num_classes)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.norm2 = CondInstanceNorm2dPlus(cout, num_classes)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation)
        self.skip = nn.Conv2d(cin, cout, 1) if (cin != cout or down) else nn.Identity()

    def forward(self, x, y):
        h = self.conv1(F.elu(self.norm1(x, y)))
        h = self.conv2(F.elu(self.norm2(h, y)))
        s = self.skip(x)
        if self.down:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class _RCU(nn.Module):
    """Residual conv unit of RefineNet: ``x + conv(ELU(norm(conv(ELU(norm(x))))))``."""

    def __init__(self, ch: int, num_classes):
        super().__init__()
        self.norm1, self.norm2 = CondInstanceNorm2dPlus(ch, num_classes), CondInstanceNorm2dPlus(ch, num_classes)
        self.conv1, self.conv2 = nn.Conv2d(ch, ch, 3, padding=1), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, y):
        return x + self.conv2(F.elu(self.norm2(self.conv1(F.elu(self.norm1(x, y))), y)))


class _RefineBlock(nn.Module):
    """RefineNet block (Lin et al. 2017): per-input RCUs, multi-resolution fusion to the largest
    input's size, chained residual pooling (``n_pool`` stages of norm → 5×5 max-pool → conv),
    and an output RCU (three of them in the last block, as in NCSN)."""

    def __init__(self, in_channels: list[int], features: int, num_classes, end: bool = False, n_pool: int = 2):
        super().__init__()
        self.adapt = nn.ModuleList(nn.ModuleList([_RCU(c, num_classes), _RCU(c, num_classes)]) for c in in_channels)
        self.fuse_norms = nn.ModuleList(CondInstanceNorm2dPlus(c, num_classes) for c in in_channels)
        self.fuse_convs = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1) for c in in_channels)
        self.pool_norms = nn.ModuleList(CondInstanceNorm2dPlus(features, num_classes) for _ in range(n_pool))
        self.pool_convs = nn.ModuleList(nn.Conv2d(features, features, 3, padding=1, bias=False) for _ in range(n_pool))
        self.out = nn.ModuleList(_RCU(features, num_classes) for _ in range(3 if end else 1))

    def forward(self, xs: list[torch.Tensor], y, size) -> torch.Tensor:
        fused = 0
        for x, rcus, norm, conv in zip(xs, self.adapt, self.fuse_norms, self.fuse_convs):
            for rcu in rcus:
                x = rcu(x, y)
            h = conv(norm(x, y))
            fused = fused + (h if h.shape[-2:] == size else F.interpolate(h, size=size, mode="bilinear", align_corners=True))
        x = F.elu(fused)
        path = x
        for norm, conv in zip(self.pool_norms, self.pool_convs):  # chained residual pooling
            path = conv(F.max_pool2d(norm(path, y), 5, stride=1, padding=2))
            x = x + path
        for rcu in self.out:
            x = rcu(x, y)
        return x


class NCSNRefineNet(nn.Module):
    """Compact dilated RefineNet score net ``s_θ(x, σ)`` for images ``[B, C, H, W]`` → same shape.

    Encoder: 3×3 conv to ``ngf`` channels, then four stages of two residual blocks —
    ``ngf``; ``2 ngf`` with one 2× down-sampling; ``2 ngf`` dilated 2; ``2 ngf`` dilated 4.
    Decoder: four RefineNet blocks from the deepest stage up, then norm → ELU → 3×3 conv.

    Args:
        in_channels: C.
        ngf: base width (NCSN: 128 for CIFAR-10 / CelebA, 64 for MNIST).
        num_classes: L noise levels for CondInstanceNorm++ (``None``: InstanceNorm++, NCSNv2).
        scale_by_sigma: divide the output by σ (NCSNv2 Technique 3).
    """

    def __init__(self, in_channels: int = 3, ngf: int = 64, num_classes: int | None = 10, scale_by_sigma: bool = False):
        super().__init__()
        self.num_classes, self.scale_by_sigma = num_classes, scale_by_sigma
        n, k = ngf, num_classes
        self.begin = nn.Conv2d(in_channels, n, 3, padding=1)
        self.stages = nn.ModuleList([
            nn.ModuleList([_CondResBlock(n, n, k), _CondResBlock(n, n, k)]),
            nn.ModuleList([_CondResBlock(n, 2 * n, k, down=True), _CondResBlock(2 * n, 2 * n, k)]),
            nn.ModuleList([_CondResBlock(2 * n, 2 * n, k, dilation=2), _CondResBlock(2 * n, 2 * n, k, dilation=2)]),
            nn.ModuleList([_CondResBlock(2 * n, 2 * n, k, dilation=4), _CondResBlock(2 * n, 2 * n, k, dilation=4)]),
        ])
        self.refine = nn.ModuleList([
            _RefineBlock([2 * n], 2 * n, k),
            _RefineBlock([2 * n, 2 * n], 2 * n, k),
            _RefineBlock([2 * n, 2 * n], n, k),
            _RefineBlock([n, n], n, k, end=True),
        ])
        self.end_norm = CondInstanceNorm2dPlus(n, k)
        self.end = nn.Conv2d(n, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, C, H, W]``; ``y``: int64 ``[B]`` level index; ``sigma``: float ``[B]``."""
        _check_inputs(self, x, y, sigma)
        h = self.begin(x)
        feats = []
        for stage in self.stages:
            for block in stage:
                h = block(h, y)
            feats.append(h)
        f1, f2, f3, f4 = feats
        r = self.refine[0]([f4], y, f4.shape[-2:])
        r = self.refine[1]([f3, r], y, f3.shape[-2:])
        r = self.refine[2]([f2, r], y, f2.shape[-2:])
        r = self.refine[3]([f1, r], y, f1.shape[-2:])
        out = self.end(F.elu(self.end_norm(r, y)))
        return _divide_by_sigma(out, sigma) if self.scale_by_sigma else out
