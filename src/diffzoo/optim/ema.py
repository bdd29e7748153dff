"""Exponential moving average of model weights (Polyak averaging), as used by DDPM (decay 0.9999)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA(nn.Module):
    """Keeps ``shadow ← d·shadow + (1 − d)·θ`` after every optimizer step.

    The averaged copy is a sub-module, so it is saved in every checkpoint next to the raw weights
    and exists on every DDP rank. ``warmup=True`` uses ``d_k = min(decay, (1 + k)/(10 + k))`` at
    update ``k`` (TensorFlow's ``ExponentialMovingAverage(num_updates)``, used by the DDPM code),
    which matters for short runs; ``update_after_step`` copies the raw weights until then.

    Args:
        model: the module to average (a deep copy is made; it is kept in eval mode, no grads).
        decay: d in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False, update_after_step: int = 0):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.update_after_step = update_after_step
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        k = int(self.num_updates)
        if k < self.update_after_step:
            return 0.0
        if self.warmup:
            k -= self.update_after_step
            return min(self.decay, (1 + k) / (10 + k))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step from ``model``'s current parameters (buffers are copied)."""
        d = self.current_decay()
        shadow = list(self.shadow.parameters())
        params = [p.detach().to(s.dtype) for s, p in zip(shadow, model.parameters())]
        if shadow:
            torch._foreach_lerp_(shadow, params, 1.0 - d)  # one fused kernel per dtype/device group
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)
        self.num_updates += 1

    def train(self, mode: bool = True):  # the shadow copy always stays in eval mode
        super().train(mode)
        self.shadow.eval()
        return self
