"""Area-downsampled images: the low-resolution data of a cascade's stages (CDM §4: each stage's data
is the same images at its own resolution).

``area_downsample(x, r)`` averages each ``f × f`` block (``f = H / r``, an integer): the box filter
that ``F.interpolate(mode="area")`` and PIL's ``BOX`` resize apply for integer factors. Averages of
averages are averages, so area downsampling composes exactly: ``D_8(D_16(x)) = D_8(x)`` — a cascade's
8×8 base data equals the 16×16 stage's derived low-resolution input.

:class:`AreaDownsampledDataModule` wraps any image data module and serves its images at ``resolution``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .base import Batch, DataSplits, DiffusionDataModule, InMemoryDataset, dataset_images

__all__ = ["area_downsample", "AreaDownsampledDataModule"]


def area_downsample(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` → ``[B, C, resolution, resolution]`` by averaging ``f × f`` blocks,
    ``f = H / resolution`` (an integer, the same for both sides). ``resolution = H`` returns ``x``."""
    H, W = x.shape[-2:]
    if H != W or resolution < 1 or H % resolution:
        raise ValueError(f"area_downsample: a square image whose side {H}x{W} is a multiple of {resolution} is needed")
    f = H // resolution
    return x if f == 1 else F.avg_pool2d(x, f)


class _Downsampled(Dataset):
    """``base`` with every ``x`` area-downsampled to ``resolution`` on fetch (labels pass through)."""

    def __init__(self, base: Dataset, resolution: int):
        self.base, self.resolution = base, resolution

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Batch:
        item = dict(self.base[i])
        item["x"] = area_downsample(item["x"][None], self.resolution)[0]
        return item

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        if not hasattr(self.base, "__getitems__"):
            return [self[int(i)] for i in indices]
        batch = dict(self.base.__getitems__(indices))
        batch["x"] = area_downsample(batch["x"], self.resolution)
        return batch


def _downsample_split(dataset: Dataset, resolution: int, shape: tuple[int, ...]) -> Dataset:
    """A plain in-memory set is downsampled once (float, in chunks); any other one (a captioned set, whose items
    carry more than ``x`` and ``y``) on fetch."""
    if type(dataset) is InMemoryDataset:
        images = dataset_images(dataset, shape)
        small = torch.cat([area_downsample(chunk, resolution) for chunk in images.split(4096)]) if len(images) else images
        return InMemoryDataset(small, dataset.y)
    return _Downsampled(dataset, resolution)


class AreaDownsampledDataModule(DiffusionDataModule):
    """The images of ``data`` (any image :class:`DiffusionDataModule`) area-downsampled to
    ``resolution`` × ``resolution`` (:func:`area_downsample`); labels and splits unchanged.

    Args:
        data: the wrapped data module (e.g. Fashion-MNIST padded to 32).
        resolution: the side served; must divide the wrapped images' side.
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    def __init__(self, data: DiffusionDataModule, resolution: int, **loader):
        super().__init__(**loader)
        C, H, W = data.data_shape
        if H != W or resolution < 1 or H % resolution:
            raise ValueError(f"data.resolution={resolution} must divide the wrapped images' side {H} (data.data.image_size)")
        self.data = data
        self.resolution = int(resolution)
        self.name = f"{data.name}_{self.resolution}px"  # e.g. fashion_mnist_16px (metric names: fid_fashion_mnist_16px1k)
        self.data_shape = (C, self.resolution, self.resolution)
        self.num_classes = data.num_classes

    def prepare_data(self) -> None:
        self.data.prepare_data()

    def load_splits(self) -> DataSplits:
        splits = self.data.load_splits()
        shape = tuple(self.data.data_shape)
        return DataSplits(*(_downsample_split(s, self.resolution, shape) for s in splits))
