"""The reverse-kernel network of Sohl-Dickstein et al. 2015 for low-dimensional data: an MLP of
``x_t`` whose outputs are read out over time through Gaussian bump basis functions.

SD15 code (``DiffusionModel.temporal_readout`` / ``generate_temporal_basis``): the network does not
take ``t`` as an input. It emits, per data dimension, ``K`` coefficients for each of the two
reverse-kernel quantities (``μ_coeff`` and ``β_coeff``); the value at step ``t`` is their weighted
sum with the weights of ``K`` Gaussian bumps evaluated at ``t``:

    g_k(t) = exp(−(s_t − c_k)² / (2 w²)) / Σ_j exp(−(s_t − c_j)² / (2 w²)),
    s_t = linspace(−1, 1, T)[t],  c_k = linspace(−1, 1, K)[k],  w = (c_1 − c_0) / 2,

so the time dependence is smooth across steps (K = 10 in the code). The dense layers use the
code's leaky ReLU (slope 0.05), orthogonal weights and zero biases.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.bumps import temporal_bump_basis  # the bumps are shared with the learned β of the SD15 schedule

__all__ = ["DPM2015MLP", "ReverseCoefficients", "temporal_bump_basis"]

LEAKY_SLOPE = 0.05  # SD15 code, regression.LeakyRelu


class ReverseCoefficients(NamedTuple):
    """The network's two outputs at step ``t``, each ``[B, D]``: ``μ_coeff`` and ``β_coeff`` of
    :func:`diffzoo.schedules.dpm2015.dpm2015_reverse_moments`."""

    mu_coeff: torch.Tensor
    beta_coeff: torch.Tensor


class DPM2015MLP(nn.Module):
    """``f(x_t, t) → (μ_coeff, β_coeff)`` for data ``[B, dim]``, time-dependent only through the
    bump readout (see the module docstring).

    Args:
        dim: data dimension ``D``.
        T: number of diffusion steps (the readout has one weight vector per step).
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        num_basis: ``K``, the temporal bump functions (10 in SD15).
        zero_init_readout: start the last layer at zero, so that ``μ_coeff = β_coeff = 0`` and
            the reverse kernel begins as SD15's isotropic "debug" setting (the forward kernel run
            backwards; bound 0 bits relative to a Gaussian on whitened data). The SD15 code
            initialises it orthogonally instead (``False``).
    """

    def __init__(
        self,
        dim: int = 2,
        T: int = 40,
        hidden: int = 64,
        depth: int = 3,
        num_basis: int = 10,
        zero_init_readout: bool = True,
    ):
        super().__init__()
        for name, value in {"dim": dim, "T": T, "hidden": hidden, "depth": depth}.items():
            if int(value) != value or value < 1:
                raise ValueError(f"DPM2015MLP: {name} must be a positive integer, got {value!r}")
        if int(num_basis) != num_basis or num_basis < 2:
            raise ValueError(f"DPM2015MLP: num_basis must be an integer >= 2, got {num_basis!r}")
        self.dim, self.T, self.num_basis = int(dim), int(T), int(num_basis)
        self.in_channels = self.dim  # the data-shape contract checked by build_module
        widths = [self.dim] + [int(hidden)] * int(depth)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.readout = nn.Linear(widths[-1], self.dim * 2 * self.num_basis)
        self.register_buffer("basis", temporal_bump_basis(self.T, self.num_basis).float(), persistent=False)
        for layer in [*self.layers, self.readout]:
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
        if zero_init_readout:
            nn.init.zeros_(self.readout.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> ReverseCoefficients:
        """``x`` ``[B, dim]``, ``t`` int64 ``[B]`` step indices in ``[0, T)`` → :class:`ReverseCoefficients`."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"DPM2015MLP: x must have shape [B, {self.dim}], got {tuple(x.shape)}")
        t = torch.as_tensor(t, device=x.device).long()
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],) or bool(((t < 0) | (t >= self.T)).any()):
            raise ValueError(f"DPM2015MLP: t must be int64 [{x.shape[0]}] in [0, {self.T}), got shape {tuple(t.shape)}")
        h = x
        for layer in self.layers:
            h = F.leaky_relu(layer(h), LEAKY_SLOPE)
        z = self.readout(h).view(x.shape[0], self.dim, 2, self.num_basis)  # [B, D, (μ, β), K]
        weights = self.basis.to(device=x.device, dtype=z.dtype)[:, t].T  # [B, K]
        coeffs = torch.einsum("bdck,bk->bdc", z, weights)  # SD15 temporal_readout
        return ReverseCoefficients(coeffs[..., 0], coeffs[..., 1])
