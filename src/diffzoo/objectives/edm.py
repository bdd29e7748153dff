"""EDM's training loss (Karras et al. 2022, §5, eq. 2 with Table 1 "Training"): log-normal noise levels
and the weight λ(σ) = 1/c_out(σ)² that makes the loss an MSE on a unit-variance effective target (eq. 8)."""

from __future__ import annotations

import torch
from torch import nn

from ..utils.tensors import bcast
from .base import ObjectiveOutput
from .vlb import mean_flat

__all__ = ["EDMLoss"]


class EDMLoss(nn.Module):
    """``E_{σ, y, n} λ(σ) ‖D_θ(y + n; σ) − y‖²`` with ``ln σ ~ N(P_mean, P_std²)``, ``n ~ N(0, σ² I)``
    and ``λ(σ) = (σ² + σ_d²)/(σ σ_d)²`` (EDM eq. 2 and Table 1). Since ``λ c_out² = 1`` this equals
    ``‖F_θ(c_in x; c_noise) − (y − c_skip x)/c_out‖²`` (eq. 8), a target of unit variance at every σ.

    The squared error is averaged over dimensions (the reference sums; Adam is invariant to that
    constant factor up to its ε).

    Args:
        P_mean, P_std: the log-normal noise-level distribution (EDM: −1.2, 1.2).
    """

    def __init__(self, P_mean: float = -1.2, P_std: float = 1.2):
        super().__init__()
        if not float(P_std) > 0:
            raise ValueError(f"objective.P_std must be > 0, got {P_std!r}")
        self.P_mean, self.P_std = float(P_mean), float(P_std)

    def extra_repr(self) -> str:
        return f"P_mean={self.P_mean}, P_std={self.P_std}"

    def sample_sigma(self, batch: int, device=None) -> torch.Tensor:
        """``σ = exp(P_mean + P_std·z)``, ``z ~ N(0, 1)`` from the global RNG → float32 ``[batch]`` (Table 1)."""
        return torch.exp(self.P_mean + self.P_std * torch.randn(batch, device=device))

    @staticmethod
    def weight(sigma, sigma_data: float) -> torch.Tensor:
        """``λ(σ) = (σ² + σ_d²)/(σ σ_d)²`` (EDM Table 1, "Training"; ``= 1/c_out²``, eq. 8), float64 like σ."""
        s = torch.as_tensor(sigma, dtype=torch.float64)
        return (s * s + sigma_data**2) / (s * sigma_data) ** 2

    def forward(self, denoise, process, x0: torch.Tensor, **cond) -> ObjectiveOutput:
        """Args: ``denoise(x, σ, **cond) → D(x; σ)`` carrying ``sigma_data``
        (:class:`~diffzoo.parameterization.edm.Preconditioned`); ``process`` with time σ
        (:class:`~diffzoo.schedules.edm.EDMProcess`: α = 1, σ(t) = t); ``x0`` ``[B, C, …]``.
        Returns the batch-mean loss, the weighted per-sample losses ``[B]`` and the drawn σ ``[B]``."""
        sigma = self.sample_sigma(x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        alpha_t, sigma_t = process.alpha(sigma), process.sigma(sigma)
        x = bcast(alpha_t, x0) * x0 + bcast(sigma_t, x0) * noise  # y + n, n ~ N(0, σ² I)
        weight = self.weight(sigma_t, float(denoise.sigma_data))
        per_sample = weight.to(x0.device, torch.float32) * mean_flat((denoise(x, sigma, **cond).float() - x0) ** 2)
        return ObjectiveOutput(per_sample.mean(), per_sample, sigma)
