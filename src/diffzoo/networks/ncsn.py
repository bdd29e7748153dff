"""Noise-conditional score networks (Song & Ermon 2019, NCSN; 2020, NCSNv2). Plain nn.Modules: no
noise levels live here; the caller passes the level index ``y`` and/or the value ``σ``.

* :class:`NCSNMLP` — an MLP score net for 2-D (or any flat) data, conditioned on the σ index by
  a per-level scale and shift of each hidden layer.
(The image nets, NCSN's and NCSNv2's dilated RefineNets, are in :mod:`diffzoo.networks.ncsn_refinenet`.)

The MLP offers the two NCSN generations as options:

* NCSN: ``num_classes = L`` — normalisation/affine parameters indexed by the level ``y``;
* NCSNv2 (Technique 3, §3.3): ``num_classes=None, scale_by_sigma=True`` — an unconditional
  net ``s_θ(x)`` whose output is divided by σ, ``s_θ(x, σ) = s_θ(x) / σ``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.tensors import bcast

__all__ = ["NCSNMLP"]


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
    return out / bcast(sigma, out)


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
