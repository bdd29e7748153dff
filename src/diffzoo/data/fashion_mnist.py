"""Fashion-MNIST (Xiao et al. 2017): 60k + 10k grey 28×28 clothing images in 10 classes.

The files are the four IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (gzipped or
not). They are looked for, in order, in ``<root>/FashionMNIST/raw`` (where torchvision downloads
them), ``<root>/fashion-mnist``, ``<root>`` and the Debian package's folder
``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``). The IDX
parser below reads all of them, so loading needs neither torchvision nor a network; only
``download=true`` uses torchvision to fetch the files.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import DataSplits, DiffusionDataModule, InMemoryDataset
from .errors import DataNotFoundError

__all__ = ["FashionMNISTDataModule", "find_fashion_mnist", "read_idx", "DEBIAN_FASHION_MNIST_DIR"]

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_SIZE = 28
_SPLITS = {"train": "train", "val": "t10k"}  # our split name -> file prefix
_KINDS = ("images-idx3-ubyte", "labels-idx1-ubyte")

# IDX format (LeCun's MNIST page): magic = 0x00 0x00 <type code> <ndim>, then ndim big-endian
# uint32 sizes, then the values in big-endian C order.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into an array of the stored type and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _candidate_dirs(root: str | Path, system_dir: str | Path | None) -> list[Path]:
    root = Path(root)
    dirs = [root / "FashionMNIST" / "raw", root / "fashion-mnist", root]
    return dirs + ([Path(system_dir)] if system_dir else [])


def _file_in(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_fashion_mnist(root: str | Path, system_dir: str | Path | None = DEBIAN_FASHION_MNIST_DIR) -> dict[str, Path]:
    """The four IDX files, from the first folder (see the module docstring) that has all of them:
    ``{"train-images-idx3-ubyte": path, …}``. Raises :class:`DataNotFoundError` if none has."""
    dirs = _candidate_dirs(root, system_dir)
    names = [f"{prefix}-{kind}" for prefix in _SPLITS.values() for kind in _KINDS]
    for directory in dirs:
        files = {name: _file_in(directory, name) for name in names}
        if all(files.values()):
            return files
    raise DataNotFoundError(
        "Fashion-MNIST ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz])",
        dirs,
        f"apt-get install dataset-fashion-mnist (Debian/Ubuntu; installs to {DEBIAN_FASHION_MNIST_DIR}), "
        f"or set data.download=true (needs internet) to fetch it into {Path(root) / 'FashionMNIST' / 'raw'}",
    )


class FashionMNISTDataModule(DiffusionDataModule):
    """Fashion-MNIST with labels; training split = the 60k ``train`` files, held-out = the 10k ``t10k``.

    Args:
        root: data folder (see the module docstring for where files are looked for).
        download: let :meth:`prepare_data` fetch the files with torchvision when they are missing.
        image_size: 28 (native) or larger, by padding with background (value −1) on all sides,
            e.g. 32 for U-Nets that halve the resolution three times.
        system_dir: the system-wide folder searched last (the Debian package's location).
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        image_size: int = FASHION_MNIST_SIZE,
        system_dir: str | None = DEBIAN_FASHION_MNIST_DIR,
        **loader,
    ):
        super().__init__(**loader)
        if image_size < FASHION_MNIST_SIZE:
            raise ValueError(f"data.image_size must be >= {FASHION_MNIST_SIZE} for fashion_mnist, got {image_size}")
        self.name = "fashion_mnist"
        self.root = str(root)
        self.download = bool(download)
        self.image_size = int(image_size)
        self.system_dir = system_dir
        self.data_shape = (1, self.image_size, self.image_size)
        self.num_classes = 10

    def prepare_data(self) -> None:
        """Download with torchvision if ``download`` is set and the files are not found (without
        ``download``, missing files are reported by :meth:`setup` on every rank)."""
        if not self.download:
            return
        try:
            find_fashion_mnist(self.root, self.system_dir)
            return
        except DataNotFoundError:
            pass
        from torchvision.datasets import FashionMNIST

        try:
            for train in (True, False):
                FashionMNIST(self.root, train=train, download=True)
        except Exception as err:  # network / disk errors surface as many types
            raise DataNotFoundError(
                "Fashion-MNIST",
                [self.root],
                f"the download failed ({err}); install the Debian package dataset-fashion-mnist or copy the files",
            ) from err

    def _load(self, split: str, files: dict[str, Path]) -> InMemoryDataset:
        prefix = _SPLITS[split]
        images = read_idx(files[f"{prefix}-images-idx3-ubyte"])
        labels = read_idx(files[f"{prefix}-labels-idx1-ubyte"])
        size = (FASHION_MNIST_SIZE, FASHION_MNIST_SIZE)
        if images.dtype != np.uint8 or images.shape[1:] != size or labels.shape != images.shape[:1]:
            raise ValueError(
                f"Fashion-MNIST {prefix}: unexpected arrays {images.dtype} {images.shape} / {labels.shape}"
            )
        x = torch.from_numpy(images.copy())[:, None]  # uint8 [N, 1, 28, 28]
        pad = self.image_size - FASHION_MNIST_SIZE
        if pad:
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=0)
        return InMemoryDataset(x, torch.from_numpy(labels.astype(np.int64)))

    def load_splits(self) -> DataSplits:
        files = find_fashion_mnist(self.root, self.system_dir)
        return DataSplits(self._load("train", files), self._load("val", files))
