"""DDPM's simplified objective L_simple (Ho et al. 2020, eq. 14)."""

from __future__ import annotations

import torch
from torch import nn

from ..schedules.discrete import DiscreteSchedule
from .base import ObjectiveOutput, uniform_timesteps
from .vlb import mean_flat

__all__ = ["SimpleLoss"]


class SimpleLoss(nn.Module):
    """``L_simple = E_{t, x_0, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖²`` (DDPM eq. 14) with
    ``t ~ U{1, …, T}`` and the squared error averaged over dimensions ("meanflat", DDPM code).

    Only the first C output channels (ε) are used, so a learned-variance network can be
    trained with it too (its variance channels then get no gradient).
    """

    def forward(self, net: nn.Module, schedule: DiscreteSchedule, x0: torch.Tensor, **cond) -> ObjectiveOutput:
        """Args: ``net(x_t, t, **cond)``; ``x0`` ``[B, C, …]`` in [-1, 1]; ``cond`` e.g. ``y``.
        Returns the batch-mean loss with per-sample losses ``[B]`` and the drawn ``t`` ``[B]``."""
        t = uniform_timesteps(schedule.T, x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, noise)
        eps = net(x_t, schedule.timesteps[t].to(x0.dtype), **cond)[:, : x0.shape[1]]
        per_sample = mean_flat((noise - eps.float()) ** 2)
        return ObjectiveOutput(per_sample.mean(), per_sample, t)
