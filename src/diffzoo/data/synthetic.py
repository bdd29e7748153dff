"""Synthetic stand-ins for downloadable data sets, written in their real on-disk formats so that
the real loaders read them (CIFAR-10 python batches; Fashion-MNIST IDX files, gzipped; a folder
of PNGs with one sub-folder per class, as ImageNet is usually unpacked).

They hold random images: they exercise a pipeline end to end (tests, ``SMOKE=1`` runs) where the
real data cannot be downloaded, and must never be mistaken for data.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

__all__ = ["write_fake_cifar10", "write_fake_fashion_mnist", "write_fake_image_folder"]


def write_fake_cifar10(root: Path, per_batch: int = 32, seed: int = 0) -> Path:
    """``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` with random images."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=per_batch).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    return root


def _write_idx(path: Path, array: np.ndarray) -> None:
    dtype_code = {np.uint8: 0x08}[array.dtype.type]
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_fake_fashion_mnist(root: Path, n_train: int = 256, n_test: int = 16, seed: int = 0) -> Path:
    """``<root>/FashionMNIST/raw/*-idx?-ubyte.gz`` with random 28x28 images."""
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, size=n, dtype=np.uint8))
    return root


def write_fake_image_folder(root: Path, classes: int = 2, per_class: int = 8, size: int = 32, seed: int = 0) -> Path:
    """``<root>/images/class_<k>/<i>.png``: random RGB images, one sub-folder per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / "images" / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root
