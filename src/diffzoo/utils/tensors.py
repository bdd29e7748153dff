"""Tensor helpers shared by every layer."""

from __future__ import annotations

import torch

__all__ = ["bcast"]


def bcast(v, like: torch.Tensor) -> torch.Tensor:
    """A per-sample value ``[B]`` (or a scalar) as ``[B, 1, …, 1]`` with ``like``'s rank, dtype and
    device, ready to multiply ``like`` ``[B, …]``."""
    v = torch.as_tensor(v)
    return v.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
