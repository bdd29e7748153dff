"""Flow matching / rectified flow: regress the velocity of the straight path (Liu et al. 2022, eq. 1;
Lipman et al. 2023, eq. 23, the conditional flow matching loss of the "OT" path with σ_min = 0)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..schedules.flow import alpha_sigma_derivatives
from ..utils.tensors import bcast
from .base import ObjectiveOutput
from .vlb import mean_flat

__all__ = ["FlowMatchingLoss", "TIME_SAMPLINGS"]

TimeSampling = Literal["uniform", "logit_normal"]
TIME_SAMPLINGS = ("uniform", "logit_normal")


class FlowMatchingLoss(nn.Module):
    """``L = E_{t, x₀, ε} ‖u_θ(x_t, t) − (α'(t) x₀ + σ'(t) ε)‖²`` with ``x_t = α(t) x₀ + σ(t) ε``;
    on the rectified-flow process (α = 1 − t, σ = t) the target is ``ε − x₀`` (Liu et al. 2022,
    eq. 1; Lipman et al. 2023, eq. 23, in diffzoo's time where noise grows with t). The squared
    error is averaged over dimensions and the batch.

    The pair ``(x₀, ε)`` is the independent coupling (ε ~ N(0, I) drawn here) unless the batch gives
    the noise of each example (``noise``): then it is the coupling of the data — reflow trains on
    pairs ``(ODE sample, its noise)`` of a previous flow (Liu et al. 2022, §2.2, Algorithm 1).

    Args:
        time_sampling: how ``t`` is drawn on ``[t_min, t_max]``: ``uniform`` (Liu et al. 2022;
            Lipman et al. 2023) or ``logit_normal``, ``t = sigmoid(m + s·n)``, ``n ~ N(0, 1)``
            (Esser et al. 2024, §3.1, π_ln(t; m, s)), mapped onto the time domain.
        logit_mean, logit_std: m and s of the logit-normal.
    """

    def __init__(self, time_sampling: TimeSampling = "uniform", logit_mean: float = 0.0, logit_std: float = 1.0):
        super().__init__()
        if time_sampling not in TIME_SAMPLINGS:
            raise ConfigError(f"objective.time_sampling={time_sampling!r} is not one of {list(TIME_SAMPLINGS)}")
        if not float(logit_std) > 0:
            raise ConfigError(f"objective.logit_std must be positive, got {logit_std!r}")
        self.time_sampling = time_sampling
        self.logit_mean, self.logit_std = float(logit_mean), float(logit_std)

    def sample_t(self, process, batch: int, device) -> torch.Tensor:
        """``t`` float64 ``[batch]`` on ``[t_min, t_max]`` from the global RNG (see ``time_sampling``)."""
        if self.time_sampling == "uniform":
            u = torch.rand(batch, device=device, dtype=torch.float64)
        else:  # Esser et al. 2024, §3.1: u = sigmoid(n), n ~ N(m, s²)
            u = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(batch, device=device, dtype=torch.float64))
        return float(process.t_min) + (float(process.t_max) - float(process.t_min)) * u

    def forward(self, net: nn.Module, process, x0: torch.Tensor, noise: torch.Tensor | None = None,
                **cond) -> ObjectiveOutput:
        """Args: ``net(x_t, τ, **cond) → [B, C(+…), …]`` with ``τ = process.model_time(t)``; ``x0``
        ``[B, C, …]``; ``noise``: ``[B, C, …]`` the coupled noise of each example (reflow) or ``None``
        (independent). Returns the batch mean, per-sample losses ``[B]`` and the drawn ``t`` ``[B]``."""
        t = self.sample_t(process, x0.shape[0], x0.device)
        eps = torch.randn_like(x0) if noise is None else noise.to(x0)
        a, s = process.alpha(t), process.sigma(t)
        da, ds = alpha_sigma_derivatives(process, t)
        x_t = bcast(a, x0) * x0 + bcast(s, x0) * eps  # the interpolant, Liu et al. 2022, eq. 1
        target = bcast(da, x0) * x0 + bcast(ds, x0) * eps  # its velocity, ε − x₀ for rectified flow
        tau = torch.as_tensor(process.model_time(t), device=x0.device).to(x0.dtype)
        u = net(x_t, tau, **cond)[:, : x0.shape[1]]
        per_sample = mean_flat((u.float() - target.float()) ** 2)
        return ObjectiveOutput(per_sample.mean(), per_sample, t.to(x0.dtype))
