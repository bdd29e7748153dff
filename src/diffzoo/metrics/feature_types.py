"""What a feature extractor returns (shared by the extractors and the metric back-ends)."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Features"]


class Features(NamedTuple):
    """``features`` float32 ``[B, d]`` (FID / KID) and ``logits`` float32 ``[B, K]`` (IS)."""

    features: torch.Tensor
    logits: torch.Tensor
