"""The data-module contract shared by every data set, and the in-memory data sets behind it.

A batch is a dict ``{"x": float32 [B, C, H, W] (or [B, D]) in [-1, 1], "y": int64 [B]}``; ``"y"``
is present only when the data set has class labels.

Training reads an endless, seeded stream (:class:`~diffzoo.data.sampler.InfiniteBatchSampler`):
training is counted in steps, the order is a function of ``(seed, batch number)``, and a resumed
run continues the stream exactly. The sampler splits the data between ranks itself, so the
``Trainer`` must be built with ``use_distributed_sampler=False``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from .sampler import InfiniteBatchSampler

__all__ = [
    "Batch",
    "DataSplits",
    "DiffusionDataModule",
    "InMemoryDataset",
    "MirroredDataset",
    "collate_batch",
    "dataset_images",
    "uint8_to_unit",
]

Batch = dict  # {"x": float32 [B, ...] in [-1, 1], "y": int64 [B] (labelled data only)}


def uint8_to_unit(x: torch.Tensor) -> torch.Tensor:
    """Bytes ``0…255`` → float32 in ``[-1, 1]``: ``x / 255 · 2 − 1`` (DDPM's data scaling)."""
    return x.float().div_(127.5).sub_(1.0)


class InMemoryDataset(Dataset):
    """A data set held as tensors, fetched a whole batch at a time.

    Args:
        x: ``[N, ...]`` uint8 (bytes, mapped to ``[-1, 1]`` on fetch) or float (already in ``[-1, 1]``).
        y: optional int ``[N]`` class labels.

    ``__getitems__(indices)`` returns one :data:`Batch` with a single gather, so a ``DataLoader``
    (with :func:`collate_batch`) does no per-sample Python work.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None):
        if y is not None and len(y) != len(x):
            raise ValueError(f"InMemoryDataset: {len(x)} inputs but {len(y)} labels")
        self.x = x if x.dtype == torch.uint8 else x.float()
        self.y = None if y is None else torch.as_tensor(y, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.x)

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        return uint8_to_unit(x) if x.dtype == torch.uint8 else x.clone()

    def __getitem__(self, i: int) -> Batch:
        item = {"x": self._convert(self.x[i])}
        if self.y is not None:
            item["y"] = self.y[i]
        return item

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch = {"x": self._convert(self.x[idx])}
        if self.y is not None:
            batch["y"] = self.y[idx]
        return batch

    def images(self) -> torch.Tensor:
        """All inputs as float32 ``[N, ...]`` in ``[-1, 1]``."""
        return self._convert(self.x)


class MirroredDataset(Dataset):
    """Horizontal-flip augmentation without a random number: index ``i < N`` is item ``i`` of
    ``base``, index ``N + i`` is the same item mirrored left–right.

    The training permutation then decides which orientation a step sees, so augmentation is as
    reproducible (and as resumable) as the data order. (DDPM trains CIFAR-10 with random flips.)
    """

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return 2 * len(self.base)

    def __getitem__(self, i: int) -> Batch:
        n = len(self.base)
        item = dict(self.base[i % n])
        if i >= n:
            item["x"] = item["x"].flip(-1)
        return item

    def __getitems__(self, indices: Sequence[int]):
        n = len(self.base)
        idx = torch.as_tensor(indices, dtype=torch.long)
        if not hasattr(self.base, "__getitems__"):
            return [self[int(i)] for i in idx]
        batch = dict(self.base.__getitems__((idx % n).tolist()))
        flip = idx >= n
        x = batch["x"].clone()
        x[flip] = x[flip].flip(-1)
        batch["x"] = x
        return batch


def collate_batch(data) -> Batch:
    """``DataLoader`` collate: a dict from ``__getitems__`` passes through; a list of per-sample
    dicts is stacked key by key into ``[B, ...]`` tensors (strings into a list, nested dicts —
    a caption batch's ``"attributes"`` — key by key)."""
    if isinstance(data, dict):
        return data
    return {key: _stack([item[key] for item in data]) for key in data[0]}


def _stack(values: list):
    if isinstance(values[0], str):
        return list(values)
    if isinstance(values[0], dict):
        return {key: _stack([v[key] for v in values]) for key in values[0]}
    return torch.stack([torch.as_tensor(v) for v in values])


def dataset_images(dataset: Dataset, item_shape: Sequence[int], chunk: int = 256) -> torch.Tensor:
    """Every input of ``dataset`` (without mirrored copies) as one float32 ``[N, *item_shape]`` tensor."""
    if isinstance(dataset, MirroredDataset):
        dataset = dataset.base
    if len(dataset) == 0:
        return torch.empty(0, *item_shape)
    if isinstance(dataset, InMemoryDataset):
        return dataset.images()
    loader = DataLoader(dataset, batch_size=chunk, shuffle=False, collate_fn=collate_batch)
    return torch.cat([batch["x"] for batch in loader])


class DataSplits(NamedTuple):
    """What :meth:`DiffusionDataModule.load_splits` returns: the training set and the held-out set."""

    train: Dataset
    val: Dataset


class DiffusionDataModule(L.LightningDataModule):
    """Base of every diffzoo data module.

    Subclasses set ``name`` (str), ``data_shape`` (``(C, H, W)`` or ``(D,)``) and ``num_classes``
    (int, or ``None`` for unlabelled data) in ``__init__`` and implement :meth:`load_splits`.

    * ``train_dataloader()`` is endless (no ``__len__``): batches come from an
      :class:`InfiniteBatchSampler` seeded with ``seed`` and split over the trainer's ranks.
      Build the ``Trainer`` with ``use_distributed_sampler=False`` and count training in steps.
    * ``val_dataloader()`` / ``test_dataloader()`` read the held-out split once, in order.
    * ``state_dict()`` records ``batches_consumed``; ``load_state_dict()`` (called by Lightning
      when resuming, before the loaders are built) makes the next ``train_dataloader()`` continue
      the stream from there.

    Args:
        batch_size: per-process training batch size.
        num_workers, pin_memory, persistent_workers: passed to the ``DataLoader``.
        seed: data-order seed.
        eval_batch_size: batch size of the held-out loaders (default ``batch_size``).
    """

    name: str = "data"
    data_shape: tuple[int, ...] = ()
    num_classes: int | None = None

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        eval_batch_size: int | None = None,
    ):
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self._batches_consumed = 0
        self._saved_global_batch_size: int | None = None

    # ------------------------------------------------------------------ subclass hook
    def load_splits(self) -> DataSplits:
        """Load (not download) the training and held-out sets; batches as in the module docstring."""
        raise NotImplementedError

    @property
    def is_conditional(self) -> bool:
        """Whether batches carry class labels ``"y"``."""
        return self.num_classes is not None

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """Load both splits once (every stage uses the same two)."""
        if self.train_set is not None:
            return
        splits = self.load_splits()
        first = splits.train[0]
        if tuple(first["x"].shape) != tuple(self.data_shape):
            raise ValueError(f"{self.name}: items have shape {tuple(first['x'].shape)}, expected {self.data_shape}")
        if ("y" in first) != self.is_conditional:
            raise ValueError(f"{self.name}: labels present={'y' in first} but num_classes={self.num_classes}")
        self.train_set, self.val_set = splits.train, splits.val

    def _rank_and_world_size(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _start_batch(self, world_size: int) -> int:
        global_batch_size = self.batch_size * world_size
        saved = self._saved_global_batch_size
        if saved is None or saved == global_batch_size:
            return self._batches_consumed
        rank_zero_warn(
            f"{self.name}: resuming with global batch {global_batch_size} (was {saved}); the data order "
            "continues at the same sample count but is not the one an uninterrupted run would have seen."
        )
        return self._batches_consumed * saved // global_batch_size

    def train_dataloader(self) -> DataLoader:
        """Endless training loader: batches of ``batch_size`` from :class:`InfiniteBatchSampler`."""
        self.setup("fit")
        rank, world_size = self._rank_and_world_size()
        connector = getattr(self.trainer, "_accelerator_connector", None)
        if world_size > 1 and getattr(connector, "use_distributed_sampler", False):
            raise ValueError(
                f"{self.name}: build the Trainer with use_distributed_sampler=False; the data module's "
                "InfiniteBatchSampler already gives each rank its own share of every batch."
            )
        sampler = InfiniteBatchSampler(
            len(self.train_set), self.batch_size, self.seed, rank, world_size,
            start_batch=self._start_batch(world_size),
        )
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_batch,
        )

    def _eval_loader(self, dataset: Dataset | None):
        if dataset is None or len(dataset) == 0:
            return []
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_batch,
        )

    def val_dataloader(self):
        """The held-out split, once, in order (``[]`` when it is empty)."""
        self.setup("validate")
        return self._eval_loader(self.val_set)

    def test_dataloader(self):
        """Same as :meth:`val_dataloader`: the held-out split."""
        self.setup("test")
        return self._eval_loader(self.val_set)

    # ------------------------------------------------------------------ whole-split tensors
    def train_dataset_tensor(self) -> torch.Tensor:
        """All training inputs (no flipped copies) as float32 ``[N, *data_shape]`` in ``[-1, 1]``.
        Loads the split into memory; meant for data sets that fit there."""
        self.setup("fit")
        return dataset_images(self.train_set, self.data_shape)

    def val_dataset_tensor(self) -> torch.Tensor:
        """All held-out inputs as float32 ``[N, *data_shape]`` in ``[-1, 1]``."""
        self.setup("validate")
        return dataset_images(self.val_set, self.data_shape)

    # ------------------------------------------------------------------ resumable state
    def state_dict(self) -> dict[str, Any]:
        """``{"batches_consumed", "global_batch_size"}``: global batches read so far
        (``global_step × accumulate_grad_batches``) and the global batch size they had."""
        trainer = self.trainer
        consumed = self._batches_consumed
        if trainer is not None:
            consumed = int(trainer.global_step) * int(trainer.accumulate_grad_batches)
        _, world_size = self._rank_and_world_size()
        return {"batches_consumed": int(consumed), "global_batch_size": self.batch_size * world_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next :meth:`train_dataloader` start at global batch ``batches_consumed``."""
        self._batches_consumed = int(state_dict["batches_consumed"])
        saved = state_dict.get("global_batch_size")
        self._saved_global_batch_size = None if saved is None else int(saved)
