"""What every training objective returns, and the default timestep distribution."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["ObjectiveOutput", "uniform_timesteps"]


class ObjectiveOutput(NamedTuple):
    """``loss``: scalar to minimise; ``per_sample``: ``[B]`` loss of each example (before any
    importance weighting); ``t``: ``[B]`` the noise levels that were drawn (for logging by t)."""

    loss: torch.Tensor
    per_sample: torch.Tensor
    t: torch.Tensor


def uniform_timesteps(T: int, batch: int, device) -> torch.Tensor:
    """``t ~ U{0, …, T−1}`` (the papers' U{1, …, T}) as int64 ``[batch]``, from the global RNG."""
    return torch.randint(0, T, (batch,), device=device)
