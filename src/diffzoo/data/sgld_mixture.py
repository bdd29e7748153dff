"""The 100 observations of Welling & Teh's mixture experiment (W&T 2011, §5.1), served as SGLD
minibatches — one independent stream per chain.

Data (W&T eq. 5, variances not standard deviations): ``x_i ~ ½ N(θ_1, σ_x²) + ½ N(θ_1 + θ_2, σ_x²)``,
``i = 1 … N``, at the true ``θ = (0, 1)``, ``σ_x² = 2``, ``N = 100``
(:func:`diffzoo.toys.sgld_mixture.sample_mixture_data`). The observations are float64 scalars,
not images: this module serves the SGLD posterior sampler, not a diffusion model, so the ``[-1, 1]``
convention of :mod:`diffzoo.data.base` does not apply.

Batches. A step of ``C`` vectorised chains needs ``C`` minibatches of ``n`` points. Each chain
reads its own endless stream of sweeps (random permutations of the ``N`` points, W&T §5.1 sweep
the data with batch size 1); the sweeps of epoch ``e`` for all chains come from one generator
seeded by ``(seed, e)``, so the data order is a function of ``(seed, batch number)`` and a resumed
run continues it exactly. A batch is ``{"x": float64 [C·n, 1]}``, chain-major: rows
``c·n … (c+1)·n − 1`` belong to chain ``c``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from diffzoo.toys.sgld_mixture import sample_mixture_data
from diffzoo.utils.random import derive_seed

from .base import Batch, DataSplits, DiffusionDataModule, collate_batch

__all__ = ["SGLDMixtureDataModule", "ChainBatchSampler", "ObservationSet"]

_STREAM = "sgld-chain-order"


class ObservationSet(Dataset):
    """Scalar observations held as float64 ``[N, 1]``; ``__getitems__`` gathers a whole batch."""

    def __init__(self, x: torch.Tensor):
        self.x = torch.as_tensor(x, dtype=torch.float64).reshape(-1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Batch:
        return {"x": self.x[i].clone()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        return {"x": self.x[torch.as_tensor(indices, dtype=torch.long)]}


class ChainBatchSampler:
    """Endless index batches for ``num_chains`` chains, each sweeping the data in its own order.

    Chain ``c`` reads the concatenation of permutations ``perm_e[c]`` of ``range(num_samples)``,
    ``e = 0, 1, …``, each cut to whole minibatches of ``batch_size``; batch ``b`` gives every
    chain the stream positions ``[b·n, (b+1)·n)``. Yields flat lists of ``num_chains·batch_size``
    indices, chain-major. No ``__len__`` (an endless epoch for Lightning).

    Args:
        num_samples: ``N``.
        batch_size: ``n`` per chain (1 in W&T §5.1).
        num_chains: ``C``.
        seed: data-order seed.
        start_batch: first batch to yield (the batches a resumed run has consumed).
    """

    def __init__(self, num_samples: int, batch_size: int, num_chains: int, seed: int = 0, start_batch: int = 0):
        if not 0 < batch_size <= num_samples:
            raise ValueError(f"ChainBatchSampler: need 0 < batch_size <= num_samples, got {batch_size}, {num_samples}")
        if num_chains < 1 or start_batch < 0:
            raise ValueError(
                f"ChainBatchSampler: need num_chains >= 1 and start_batch >= 0, got {num_chains}, {start_batch}"
            )
        self.num_samples, self.batch_size, self.num_chains = int(num_samples), int(batch_size), int(num_chains)
        self.seed, self.start_batch = int(seed), int(start_batch)
        self.batches_per_epoch = self.num_samples // self.batch_size
        self._cached: tuple[int, torch.Tensor] | None = None

    def permutations(self, epoch: int) -> torch.Tensor:
        """The sweep order of every chain in ``epoch``: int64 ``[C, N]``, a function of ``(seed, epoch)``."""
        if self._cached is None or self._cached[0] != epoch:
            g = torch.Generator().manual_seed(derive_seed(self.seed, _STREAM, epoch))
            self._cached = (epoch, torch.rand(self.num_chains, self.num_samples, generator=g).argsort(dim=1))
        return self._cached[1]

    def batch(self, b: int) -> torch.Tensor:
        """Indices of batch ``b``: int64 ``[C, n]`` (row ``c`` = chain ``c``'s minibatch)."""
        epoch, k = divmod(b, self.batches_per_epoch)
        return self.permutations(epoch)[:, k * self.batch_size: (k + 1) * self.batch_size]

    def __iter__(self) -> Iterator[list[int]]:
        b = self.start_batch
        while True:
            yield self.batch(b).flatten().tolist()
            b += 1


class SGLDMixtureDataModule(DiffusionDataModule):
    """W&T §5.1's observations, with per-chain minibatches (see the module docstring).

    Args:
        num_data: ``N`` (100 in W&T).
        theta: the true ``(θ_1, θ_2)`` the data are drawn at ((0, 1) in W&T).
        lik_var: ``σ_x²`` of the data-generating mixture (2 in W&T).
        num_chains: ``C``, the chains the model runs side by side (``model.num_chains``).
        data_seed: seed of the draw of the observations (kept apart from ``seed``, the order).
        batch_size: minibatch size ``n`` per chain (1 in W&T).
        **loader: ``seed``, ``num_workers``, … of :class:`DiffusionDataModule`.
    """

    def __init__(
        self,
        num_data: int = 100,
        theta: Sequence[float] = (0.0, 1.0),
        lik_var: float = 2.0,
        num_chains: int = 1,
        data_seed: int = 0,
        batch_size: int = 1,
        **loader,
    ):
        super().__init__(batch_size=batch_size, **loader)
        if num_data < 1 or num_chains < 1:
            raise ValueError(f"data.num_data and data.num_chains must be >= 1, got {num_data}, {num_chains}")
        if self.batch_size > num_data:
            raise ValueError(f"data.batch_size (per chain) must be <= data.num_data={num_data}, got {self.batch_size}")
        if len(theta) != 2 or not lik_var > 0:
            raise ValueError(f"data.theta must hold two numbers and data.lik_var must be > 0, got {theta}, {lik_var}")
        self.name = "sgld_mixture"
        self.num_data, self.num_chains = int(num_data), int(num_chains)
        self.theta, self.lik_var = tuple(float(v) for v in theta), float(lik_var)
        self.data_seed = int(data_seed)
        self.data_shape = (1,)
        self.num_classes = None

    def observations(self) -> torch.Tensor:
        """The ``N`` observations, float64 ``[N]`` (the same draw every call)."""
        g = torch.Generator().manual_seed(derive_seed(self.data_seed, "sgld-mixture"))
        return sample_mixture_data(self.num_data, self.theta, self.lik_var, generator=g)

    def load_splits(self) -> DataSplits:
        return DataSplits(ObservationSet(self.observations()), ObservationSet(torch.empty(0)))

    def train_dataloader(self) -> DataLoader:
        """Endless loader of ``{"x": float64 [C·n, 1]}`` batches from :class:`ChainBatchSampler`."""
        self.setup("fit")
        _, world_size = self._rank_and_world_size()
        if world_size != 1:
            raise ValueError(
                f"{self.name}: runs in one process (the chains are vectorised); got world_size={world_size}"
            )
        sampler = ChainBatchSampler(
            len(self.train_set), self.batch_size, self.num_chains, self.seed, start_batch=self._start_batch(world_size)
        )
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate_batch)
