"""How a model sees the data: in ``[−1, 1]`` as loaded, or in ``[0, 1]`` (NCSN, NCSNv2 and Score SDE's
VE models, whose σ values were chosen for data in ``[0, 1]``: Score SDE ``data.centered=False``)."""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import ConfigError

__all__ = ["DataScaling", "DATA_TRANSFORMS"]

DataTransform = Literal["none", "unit"]
DATA_TRANSFORMS = ("none", "unit")


class DataScaling:
    """``"none"``: the model sees data in ``[−1, 1]``; ``"unit"``: it sees ``(x + 1)/2 ∈ [0, 1]``."""

    def __init__(self, kind: DataTransform = "none"):
        if kind not in DATA_TRANSFORMS:
            raise ConfigError(f"model.data_transform: unknown {kind!r}; allowed: {list(DATA_TRANSFORMS)}")
        self.kind = kind

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data in ``[−1, 1]`` → the model's coordinates."""
        return (x + 1) / 2 if self.kind == "unit" else x

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        """The model's coordinates → data coordinates ``[−1, 1]``."""
        return 2 * x - 1 if self.kind == "unit" else x

    @property
    def range(self) -> tuple[float, float]:
        """The range of image data in the model's coordinates: ``(−1, 1)`` or ``(0, 1)``."""
        return (0.0, 1.0) if self.kind == "unit" else (-1.0, 1.0)
