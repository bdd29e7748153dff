"""A data set of reflow pairs: each example is an ODE sample ``x`` with the noise ``noise`` it came
from (Liu et al. 2022, §2.2, Algorithm 1), read from a pairs file (``diffzoo.lit.flow.write_reflow_pairs``
writes one from any flow checkpoint). A flow module trained on it gets the coupled noise in each batch
(``FlowMatchingLoss`` then uses it instead of fresh noise): 2-rectified flow from a file.

The held-out split is the last ``n_val`` pairs; evaluation metrics then compare samples with the
teacher's ODE samples, not with the original data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .base import Batch, DataSplits, DiffusionDataModule

__all__ = ["PairsDataset", "ReflowPairsDataModule"]


class PairsDataset(Dataset):
    """Pairs held as tensors: ``x`` ``[N, …]`` (the ODE samples) and ``noise`` ``[N, …]`` (their starting points)."""

    def __init__(self, x: torch.Tensor, noise: torch.Tensor):
        if x.shape != noise.shape:
            raise ValueError(f"reflow pairs: samples {tuple(x.shape)} and noise {tuple(noise.shape)} differ in shape")
        self.x, self.noise = x.float(), noise.float()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Batch:
        return {"x": self.x[i].clone(), "noise": self.noise[i].clone()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"x": self.x[idx], "noise": self.noise[idx]}

    def images(self) -> torch.Tensor:
        """All samples ``[N, …]`` (what metrics compare with)."""
        return self.x.clone()


class ReflowPairsDataModule(DiffusionDataModule):
    """Batches ``{"x": [B, …], "noise": [B, …]}`` from the pairs file ``path``.

    Args:
        path: a file written by :func:`~diffzoo.samplers.reflow.save_pairs`.
        n_val: pairs held out (the last ones).
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    def __init__(self, path: str | None = None, n_val: int = 256, **loader):
        super().__init__(**loader)
        if path is None:
            raise ValueError("data.path must name a reflow pairs file (diffzoo.lit.flow.write_reflow_pairs writes one)")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"data.path={str(self.path)!r}: no such reflow pairs file")
        data = torch.load(self.path, map_location="cpu", weights_only=True)
        self._x, self._noise = data["x0"], data["noise"]
        if not 0 <= int(n_val) < len(self._x):
            raise ValueError(f"data.n_val={n_val} must lie in [0, {len(self._x)}) (the file holds {len(self._x)} pairs)")
        self.n_val = int(n_val)
        self.name = "reflow_pairs"
        self.data_shape = tuple(self._x.shape[1:])
        self.num_classes = None

    def load_splits(self) -> DataSplits:
        cut = len(self._x) - self.n_val
        return DataSplits(PairsDataset(self._x[:cut], self._noise[:cut]), PairsDataset(self._x[cut:], self._noise[cut:]))
