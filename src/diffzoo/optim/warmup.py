"""Learning-rate warm-up (DDPM: linear over the first 5000 steps, then constant)."""

from __future__ import annotations

import torch

__all__ = ["linear_warmup"]


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int = 5000) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr_k = lr · min(1, (k + 1)/warmup_steps)`` per optimizer step k (DDPM code ``warmup``)."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Warmup(warmup_steps))


class _Warmup:
    """Picklable ``k ↦ min(1, (k + 1)/n)``."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, k: int) -> float:
        return min(1.0, (k + 1) / self.n)
