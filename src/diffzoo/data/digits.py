"""scikit-learn's handwritten digits: 1797 grey 8×8 images of 0–9, shipped with the library
(no download), small enough to train a diffusion model on a laptop CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffzoo.utils.random import derive_seed

from .base import DataSplits, DiffusionDataModule, InMemoryDataset

__all__ = ["DigitsDataModule", "load_digits_tensors"]

DIGITS_MAX_VALUE = 16.0  # load_digits pixels are counts 0…16 (4×4 blocks of a 32×32 bitmap)
DIGITS_SIZE = 8


def load_digits_tensors(image_size: int = DIGITS_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits: float32 ``[1797, 1, S, S]`` in ``[-1, 1]`` (``x / 16 · 2 − 1``) and int64
    labels ``[1797]``. ``S = image_size ≥ 8``; larger sizes are bilinear upsamplings of the 8×8
    images (convex combinations of pixels, so the range stays ``[-1, 1]``)."""
    from sklearn.datasets import load_digits

    if image_size < DIGITS_SIZE:
        raise ValueError(f"data.image_size must be >= {DIGITS_SIZE} for digits, got {image_size}")
    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32)[:, None] / DIGITS_MAX_VALUE * 2 - 1
    if image_size != DIGITS_SIZE:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x, torch.as_tensor(digits.target, dtype=torch.long)


class DigitsDataModule(DiffusionDataModule):
    """Digits with labels 0–9, split once into ``n_val`` held-out images and the rest for training.

    Args:
        image_size: side of the images (8 = native; larger = bilinear upsampling).
        n_val: held-out images (default 297, leaving 1500 for training).
        split_seed: seed of the train/held-out split (independent of ``seed``, the data order).
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    def __init__(self, image_size: int = DIGITS_SIZE, n_val: int = 297, split_seed: int = 0, **loader):
        super().__init__(**loader)
        if image_size < DIGITS_SIZE:
            raise ValueError(f"data.image_size must be >= {DIGITS_SIZE} for digits, got {image_size}")
        if not 0 <= n_val < 1797:
            raise ValueError(f"data.n_val must be in [0, 1797) for digits, got {n_val}")
        self.name = "digits"
        self.image_size = int(image_size)
        self.n_val = int(n_val)
        self.split_seed = int(split_seed)
        self.data_shape = (1, self.image_size, self.image_size)
        self.num_classes = 10

    def load_splits(self) -> DataSplits:
        x, y = load_digits_tensors(self.image_size)
        g = torch.Generator()
        g.manual_seed(derive_seed(self.split_seed, "digits-split"))
        perm = torch.randperm(len(x), generator=g)
        val, train = perm[: self.n_val].sort().values, perm[self.n_val:].sort().values
        return DataSplits(InMemoryDataset(x[train], y[train]), InMemoryDataset(x[val], y[val]))
