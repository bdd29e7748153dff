"""Any folder of images, optionally one sub-folder per class.

``root/*.png`` gives unlabelled data; ``root/<class>/**/*.png`` gives labels ``0…K−1`` in the
sorted order of the class folder names. Each image is converted to RGB or grey, its shorter side
resized to ``resolution`` (bicubic, PIL's antialiased filter) and centre-cropped to a square.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from diffzoo.utils.random import derive_seed

from .base import DataSplits, DiffusionDataModule, InMemoryDataset, MirroredDataset, uint8_to_unit
from .errors import DataNotFoundError, check_choice

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderIndex",
    "ImageFileDataset",
    "ImageFolderDataModule",
    "load_image",
    "scan_image_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_PIL_MODES = {1: "L", 3: "RGB"}


class FolderIndex(NamedTuple):
    """The images of a folder: ``files`` in sorted order, their ``labels`` and the ``classes``
    (folder names) — both ``None`` for unlabelled data."""

    files: list[Path]
    labels: list[int] | None
    classes: list[str] | None


def _images_under(directory: Path, recursive: bool) -> list[Path]:
    found = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def scan_image_folder(root: str | Path, use_labels: bool = True) -> FolderIndex:
    """List the images under ``root``; with ``use_labels`` and class sub-folders, label them.

    Raises :class:`DataNotFoundError` when ``root`` is missing or holds no image, and
    ``ValueError`` when images lie both in ``root`` and in sub-folders while ``use_labels`` is set.
    """
    root = Path(root)
    how = (
        f"put images ({', '.join(IMAGE_EXTENSIONS)}), optionally one sub-folder per class, "
        f"under {root}, or set data.root"
    )
    if not root.is_dir():
        raise DataNotFoundError("image folder", [root], how)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not use_labels or not subdirs:
        files = _images_under(root, recursive=True)
        if not files:
            raise DataNotFoundError("images", [root], how)
        return FolderIndex(files, None, None)
    if _images_under(root, recursive=False):
        raise ValueError(
            f"{root}: images lie both in the folder and in sub-folders {[d.name for d in subdirs]}; "
            "move them into class folders, or set data.use_labels=false"
        )
    per_class = [(d.name, _images_under(d, recursive=True)) for d in subdirs]
    per_class = [(name, files) for name, files in per_class if files]
    if not per_class:
        raise DataNotFoundError("images", [root], how)
    files = [f for _, fs in per_class for f in fs]
    labels = [k for k, (_, fs) in enumerate(per_class) for _ in fs]
    return FolderIndex(files, labels, [name for name, _ in per_class])


def load_image(path: str | Path, resolution: int, channels: int = 3) -> torch.Tensor:
    """Decode, convert, resize the shorter side to ``resolution`` and centre-crop:
    uint8 ``[channels, resolution, resolution]``."""
    from PIL import Image

    check_choice("data.channels", channels, list(_PIL_MODES))
    with Image.open(path) as im:
        im = im.convert(_PIL_MODES[channels])
    w, h = im.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    if size != (w, h):
        im = im.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    im = im.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(im, dtype=np.uint8)
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


class ImageFileDataset(Dataset):
    """Images decoded on access: item ``{"x": float32 [C, R, R] in [-1, 1], "y": int64 []}``
    (``"y"`` only with labels)."""

    def __init__(self, files: list[Path], labels: list[int] | None, resolution: int, channels: int):
        self.files, self.labels = list(files), labels
        self.resolution, self.channels = resolution, channels

    def __len__(self) -> int:
        return len(self.files)

    def load_uint8(self, i: int) -> torch.Tensor:
        return load_image(self.files[i], self.resolution, self.channels)

    def __getitem__(self, i: int):
        item = {"x": uint8_to_unit(self.load_uint8(i))}
        if self.labels is not None:
            item["y"] = torch.tensor(self.labels[i], dtype=torch.long)
        return item

    def to_memory(self) -> InMemoryDataset:
        """Decode every image once into an :class:`InMemoryDataset` (uint8)."""
        if len(self) == 0:
            x = torch.empty(0, self.channels, self.resolution, self.resolution, dtype=torch.uint8)
        else:
            x = torch.stack([self.load_uint8(i) for i in range(len(self))])
        y = None if self.labels is None else torch.tensor(self.labels, dtype=torch.long)
        return InMemoryDataset(x, y)


class ImageFolderDataModule(DiffusionDataModule):
    """A folder of images as a data module.

    Args:
        root: the folder (see the module docstring for the layout).
        resolution: side of the square images after resize + centre crop.
        channels: 3 (RGB) or 1 (grey).
        use_labels: label images by class sub-folder (when there are sub-folders).
        val_fraction: share of the images held out (at least one image when > 0).
        split_seed: seed of the train/held-out split (independent of ``seed``, the data order).
        hflip: train on every image and its mirror image (see :class:`MirroredDataset`).
        in_memory: decode every image once in :meth:`setup` instead of on every access.
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    def __init__(
        self,
        root: str = "data/images",
        resolution: int = 64,
        channels: int = 3,
        use_labels: bool = True,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        hflip: bool = False,
        in_memory: bool = False,
        **loader,
    ):
        super().__init__(**loader)
        check_choice("data.channels", channels, list(_PIL_MODES))
        if resolution <= 0 or not 0 <= val_fraction < 1:
            raise ValueError(
                f"need data.resolution > 0 and 0 <= data.val_fraction < 1, got {resolution}, {val_fraction}"
            )
        self.name = Path(root).name or "image_folder"
        self.root = str(root)
        self.resolution, self.channels = int(resolution), int(channels)
        self.use_labels, self.val_fraction, self.split_seed = bool(use_labels), float(val_fraction), int(split_seed)
        self.hflip, self.in_memory = bool(hflip), bool(in_memory)
        self.data_shape = (self.channels, self.resolution, self.resolution)
        self._index: FolderIndex | None = None

    @property
    def index(self) -> FolderIndex:
        """The scanned folder (scanned on first use)."""
        if self._index is None:
            self._index = scan_image_folder(self.root, self.use_labels)
        return self._index

    @property
    def num_classes(self) -> int | None:
        """Number of class folders, or ``None`` for unlabelled data."""
        return None if self.index.classes is None else len(self.index.classes)

    def load_splits(self) -> DataSplits:
        files, labels, _ = self.index
        n = len(files)
        n_val = 0 if self.val_fraction == 0 else min(n - 1, max(1, round(self.val_fraction * n)))
        g = torch.Generator()
        g.manual_seed(derive_seed(self.split_seed, "image-folder-split"))
        perm = torch.randperm(n, generator=g)
        splits = []
        for idx in (perm[n_val:].sort().values, perm[:n_val].sort().values):
            subset_labels = None if labels is None else [labels[i] for i in idx]
            subset = ImageFileDataset([files[i] for i in idx], subset_labels, self.resolution, self.channels)
            splits.append(subset.to_memory() if self.in_memory else subset)
        train, val = splits
        return DataSplits(MirroredDataset(train) if self.hflip else train, val)
