"""EDM's preconditioning (Karras et al. 2022, "Elucidating the Design Space…", §5 and Table 1): the
denoiser ``D_θ(x; σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x; c_noise(σ))`` (eq. 7) around a raw
network ``F_θ``, with

    c_skip = σ_d²/(σ² + σ_d²),  c_out = σ σ_d/√(σ² + σ_d²),  c_in = 1/√(σ² + σ_d²),  c_noise = ¼ ln σ

(Table 1, "Network and preconditioning"; derived in App. B.6 so that the network's input and its
effective training target both have unit variance for data of standard deviation σ_d).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..errors import ConfigError
from ..utils.tensors import bcast

__all__ = ["EDMScalings", "EDMPreconditioning", "Preconditioned"]


class EDMScalings(NamedTuple):
    """The four coefficients at σ (float64 tensors like σ)."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


class EDMPreconditioning:
    """EDM's ``c_skip, c_out, c_in, c_noise`` (module docstring) for data of standard deviation ``sigma_data``.

    Args:
        sigma_data: σ_d, the standard deviation of the data (EDM: 0.5 for images in [−1, 1]).
    """

    def __init__(self, sigma_data: float = 0.5):
        if not float(sigma_data) > 0:
            raise ConfigError(f"model.sigma_data must be > 0 (EDM's σ_data), got {sigma_data!r}")
        self.sigma_data = float(sigma_data)

    def __repr__(self) -> str:
        return f"EDMPreconditioning(sigma_data={self.sigma_data})"

    def scalings(self, sigma) -> EDMScalings:
        """``c_skip, c_out, c_in, c_noise`` at ``sigma`` (number or ``[B]``) as float64 (EDM Table 1)."""
        s = torch.as_tensor(sigma, dtype=torch.float64)
        sd2 = self.sigma_data**2
        norm = torch.sqrt(s * s + sd2)
        return EDMScalings(
            c_skip=sd2 / (s * s + sd2),        # Table 1: σ_d²/(σ² + σ_d²)
            c_out=s * self.sigma_data / norm,  # Table 1: σ σ_d/√(σ² + σ_d²)
            c_in=1.0 / norm,                   # Table 1: 1/√(σ² + σ_d²)
            c_noise=0.25 * torch.log(s),       # Table 1: ¼ ln σ
        )

    def __call__(self, net: nn.Module, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """``D_θ(x; σ)`` (eq. 7): ``x`` ``[B, C, …]``, ``sigma`` ``[B]`` (or a number) → ``[B, C, …]``.
        The network sees ``c_in x`` and ``c_noise`` ``[B]``; only its first C output channels are used."""
        sigma = torch.as_tensor(sigma, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        c = self.scalings(sigma)
        f = net(bcast(c.c_in, x) * x, c.c_noise.to(device=x.device, dtype=x.dtype), **cond)[:, : x.shape[1]]
        return bcast(c.c_skip, x) * x + bcast(c.c_out, x) * f.to(x.dtype)  # eq. 7

    def bind(self, net: nn.Module) -> "Preconditioned":
        """``D_θ`` as a callable ``D(x, σ, **cond)`` of ``net`` (carrying :attr:`sigma_data` for the loss)."""
        return Preconditioned(net, self)


class Preconditioned:
    """``D(x, σ, **cond) = precond(net, x, σ, **cond)``; ``sigma_data`` and ``precond`` travel with it."""

    def __init__(self, net: nn.Module, precond: EDMPreconditioning):
        self.net, self.precond = net, precond

    @property
    def sigma_data(self) -> float:
        """σ_d of the preconditioning (the loss weight reads it here)."""
        return self.precond.sigma_data

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """``D_θ(x; σ)``: ``x`` ``[B, C, …]``, ``sigma`` ``[B]`` or a number → ``[B, C, …]`` (eq. 7)."""
        return self.precond(self.net, x, sigma, **cond)
