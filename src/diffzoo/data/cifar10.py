"""CIFAR-10 (Krizhevsky 2009): 50k training + 10k test colour 32×32 images in 10 classes.

Read from the extracted python version, ``<root>/cifar-10-batches-py/{data_batch_1…5,test_batch}``
(the layout torchvision downloads). Nothing is fetched unless ``download=true``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .base import DataSplits, DiffusionDataModule, InMemoryDataset, MirroredDataset
from .errors import DataNotFoundError

__all__ = ["CIFAR10DataModule", "read_cifar_batches", "CIFAR10_FOLDER"]

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]}


def read_cifar_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate CIFAR python batches: uint8 ``[N, 3, 32, 32]`` and int64 labels ``[N]``.
    Each batch is a pickled dict with ``data`` (uint8 ``[n, 3072]``, channel-major rows) and
    ``labels``."""
    xs, ys = [], []
    for path in paths:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
            raise ValueError(f"{path}: not a CIFAR-10 batch (data {data.shape}, labels {labels.shape})")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


class CIFAR10DataModule(DiffusionDataModule):
    """CIFAR-10 with labels; held-out split = the 10k test images.

    Args:
        root: folder that holds (or will hold) ``cifar-10-batches-py``.
        download: let :meth:`prepare_data` fetch it with torchvision (needs internet).
        hflip: train on every image and its mirror image (DDPM's random flip, Ho et al. 2020 App. B,
            made deterministic by :class:`MirroredDataset`).
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    def __init__(self, root: str = "data", download: bool = False, hflip: bool = True, **loader):
        super().__init__(**loader)
        self.name = "cifar10"
        self.root = str(root)
        self.download = bool(download)
        self.hflip = bool(hflip)
        self.data_shape = (3, 32, 32)
        self.num_classes = 10

    @property
    def folder(self) -> Path:
        return Path(self.root) / CIFAR10_FOLDER

    def _missing(self) -> list[Path]:
        names = CIFAR10_FILES["train"] + CIFAR10_FILES["val"]
        return [self.folder / n for n in names if not (self.folder / n).is_file()]

    def _not_found(self, detail: str = "") -> DataNotFoundError:
        return DataNotFoundError(
            f"CIFAR-10{detail}",
            [self.folder],
            f"set data.download=true (needs internet), or put the extracted '{CIFAR10_FOLDER}' folder "
            f"(from cifar-10-python.tar.gz) under {self.root}",
        )

    def prepare_data(self) -> None:
        """Download with torchvision if ``download`` is set and files are missing (without
        ``download``, missing files are reported by :meth:`setup` on every rank)."""
        if not self.download or not self._missing():
            return
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(self.root, train=True, download=True)
        except Exception as err:  # network / disk errors surface as many types
            raise self._not_found(f" (the download failed: {err})") from err

    def load_splits(self) -> DataSplits:
        missing = self._missing()
        if missing:
            raise self._not_found(f" (missing {', '.join(p.name for p in missing)})")
        train = InMemoryDataset(*read_cifar_batches([self.folder / n for n in CIFAR10_FILES["train"]]))
        val = InMemoryDataset(*read_cifar_batches([self.folder / n for n in CIFAR10_FILES["val"]]))
        return DataSplits(MirroredDataset(train) if self.hflip else train, val)
