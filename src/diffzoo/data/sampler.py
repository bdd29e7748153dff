"""An endless, seeded, resumable stream of index batches for step-based training.

Training in diffzoo counts optimizer steps, not epochs, and a resumed run must see exactly the
batches an uninterrupted run would have seen. :class:`InfiniteBatchSampler` makes the data order a
pure function of ``(seed, batch number)``:

* the *stream* is the concatenation of random permutations of ``range(num_samples)``;
  permutation ``e`` ("epoch" ``e``) is drawn by a ``torch.Generator`` seeded with
  ``derive_seed(seed, "data-order", e)``, so it depends on nothing else;
* global batch ``b`` is stream positions ``[b·G, (b+1)·G)`` with ``G = batch_size · world_size``;
* rank ``r`` takes the ``r``-th ``batch_size``-long slice of every global batch, so the ranks are
  disjoint and together read exactly what one process with batch ``G`` would read;
* ``start_batch = k`` starts at global batch ``k``: resuming is a constructor argument.

With ``drop_last=True`` (the default, PyTorch's meaning of the name) each permutation is cut to a
whole number of global batches — its last ``num_samples mod G`` entries are dropped and a batch
never mixes two epochs. With ``drop_last=False`` nothing is dropped and a batch may straddle two
permutations.

The sampler has no ``__len__``: a ``DataLoader`` built on it has no length, which Lightning reads
as an infinite epoch. Because the sampler already splits the data between ranks, the Lightning
``Trainer`` must run with ``use_distributed_sampler=False``.
"""

from __future__ import annotations

from typing import Iterator

import torch

from diffzoo.utils.random import derive_seed

__all__ = ["InfiniteBatchSampler", "epoch_permutation"]

_STREAM = "data-order"


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """Permutation ``e`` of the stream: int64 ``[num_samples]``, a function of ``(seed, epoch)`` only."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, _STREAM, epoch))
    return torch.randperm(num_samples, generator=g)


class InfiniteBatchSampler:
    """Endless per-rank index batches (lists of ``batch_size`` ints); see the module docstring.

    Args:
        num_samples: size of the dataset (indices ``0 … num_samples−1``).
        batch_size: per-rank batch size ``B``.
        seed: data-order seed.
        rank, world_size: this process's rank and the number of processes.
        start_batch: first global batch to yield (``batches_consumed`` of a resumed run).
        drop_last: cut each permutation to whole global batches (see the module docstring).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        drop_last: bool = True,
    ):
        if num_samples <= 0 or batch_size <= 0:
            raise ValueError(
                f"InfiniteBatchSampler: num_samples and batch_size must be positive, got {num_samples}, {batch_size}"
            )
        if world_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(
                f"InfiniteBatchSampler: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if start_batch < 0:
            raise ValueError(f"InfiniteBatchSampler: start_batch must be >= 0, got {start_batch}")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start_batch = int(start_batch)
        self.drop_last = bool(drop_last)
        if self.drop_last and self.num_samples < self.global_batch_size:
            raise ValueError(
                f"InfiniteBatchSampler: drop_last=True needs num_samples >= batch_size * world_size, got "
                f"{self.num_samples} < {self.batch_size} * {self.world_size}; "
                "lower data.batch_size or use drop_last=False"
            )
        self._cached_epoch: int | None = None
        self._cached_perm: torch.Tensor | None = None

    @property
    def global_batch_size(self) -> int:
        """``G = batch_size · world_size``: samples consumed by all ranks per global batch."""
        return self.batch_size * self.world_size

    @property
    def epoch_length(self) -> int:
        """Stream positions contributed by one permutation (``num_samples`` cut to whole batches
        when ``drop_last``)."""
        if self.drop_last:
            return (self.num_samples // self.global_batch_size) * self.global_batch_size
        return self.num_samples

    def global_batch(self, b: int) -> torch.Tensor:
        """Indices of global batch ``b`` (all ranks together): int64 ``[G]``."""
        return self._positions(b * self.global_batch_size, self.global_batch_size)

    def _permutation(self, epoch: int) -> torch.Tensor:
        """``epoch_permutation`` with a one-entry cache (consecutive batches share an epoch)."""
        if self._cached_epoch != epoch:
            self._cached_perm = epoch_permutation(self.num_samples, self.seed, epoch)
            self._cached_epoch = epoch
        return self._cached_perm

    def _positions(self, start: int, count: int) -> torch.Tensor:
        """Stream entries ``[start, start + count)`` as int64 ``[count]``."""
        parts, length = [], self.epoch_length
        while count > 0:
            epoch, offset = divmod(start, length)
            take = min(count, length - offset)
            parts.append(self._permutation(epoch)[offset: offset + take])
            start, count = start + take, count - take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def __iter__(self) -> Iterator[list[int]]:
        b, B = self.start_batch, self.batch_size
        while True:
            yield self.global_batch(b)[self.rank * B: (self.rank + 1) * B].tolist()
            b += 1

    def __repr__(self) -> str:
        return (
            f"InfiniteBatchSampler(num_samples={self.num_samples}, batch_size={self.batch_size}, seed={self.seed}, "
            f"rank={self.rank}, world_size={self.world_size}, start_batch={self.start_batch}, "
            f"drop_last={self.drop_last})"
        )
