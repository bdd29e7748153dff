"""Distributed evaluation: which samples each process draws, and gathering what it computed.

Sample ``i`` (a *global* index in ``0 … N−1``) is a function of ``(seed, i)`` only
(:func:`diffzoo.samplers.sample_indices`, the loop of ``diffzoo-sample`` too). The indices are cut into global batches
``[b·B, (b+1)·B)`` of the configured batch size ``B``; each process takes whole batches —
a contiguous run of them or every ``world_size``-th one — so a batch is computed with the same
contents and size whatever the number of processes, and 1 or 8 processes give bit-identical
samples (same thread count assumed). Nothing is padded: the last batch is short, a process may
get fewer batches than another, and :func:`gather_by_index` asserts that exactly ``N`` distinct
indices came back. What is gathered is small (features, not images).
"""

from __future__ import annotations

from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from ..samplers.loop import SampleBatch

__all__ = [
    "SHARD_MODES",
    "rank_and_world_size",
    "shard_batches",
    "gather_by_index",
    "all_reduce_max",
    "rank_zero_first",
    "SampleBatch",
    "draw_samples",
]

SHARD_MODES = ("contiguous", "strided")
_MAX_DIMS = 8  # rows of at most [N, d1, …, d7]: features [N, d], images [N, C, H, W]
T = TypeVar("T")


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_batches(n: int, batch_size: int, rank: int, world_size: int, mode: str = "contiguous") -> list[range]:
    """The global-index batches process ``rank`` of ``world_size`` draws.

    Global batch ``b`` is ``range(b·B, min(N, (b+1)·B))``. ``contiguous``: process ``r`` takes
    batches ``⌊r·nb/W⌋ … ⌊(r+1)·nb/W⌋ − 1``; ``strided``: batches ``r, r+W, r+2W, …``. Over all
    ranks every index in ``0 … N−1`` appears exactly once.
    """
    if mode not in SHARD_MODES:
        raise ValueError(f"shard mode {mode!r} is not one of {list(SHARD_MODES)}")
    if n < 1 or batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_batches: need n >= 1, batch_size >= 1, 0 <= rank < world_size; got {n}, {batch_size}, {rank}, {world_size}")
    n_batches = -(-n // batch_size)
    batches = [range(b * batch_size, min(n, (b + 1) * batch_size)) for b in range(n_batches)]
    if mode == "strided":
        return batches[rank::world_size]
    return batches[rank * n_batches // world_size: (rank + 1) * n_batches // world_size]


def _collective_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _all_gather_variable(x: torch.Tensor) -> list[torch.Tensor]:
    """All-gather tensors whose first dimension differs between ranks (a rank may hold none).

    The collective needs equal shapes, so each rank's rows travel in a buffer of the largest row
    count and are cut back to their true length on arrival (a transport detail: no row is ever
    duplicated). A rank with no rows takes the trailing shape from one that has some.
    """
    world_size, device = dist.get_world_size(), _collective_device()
    if x.ndim > _MAX_DIMS:
        raise ValueError(f"cannot gather tensors with more than {_MAX_DIMS} dims, got {x.ndim}")
    desc = torch.full((_MAX_DIMS,), -1, dtype=torch.long)
    desc[: x.ndim] = torch.tensor(x.shape)
    descs = [torch.empty_like(desc, device=device) for _ in range(world_size)]
    dist.all_gather(descs, desc.to(device))
    shapes = [tuple(int(v) for v in d.cpu() if v >= 0) for d in descs]
    filled = [s for s in shapes if s[0] > 0]
    trailing = filled[0][1:] if filled else tuple(x.shape[1:])
    sizes = [s[0] for s in shapes]
    buffer = torch.zeros((max(max(sizes), 1), *trailing), dtype=x.dtype, device=device)
    buffer[: x.shape[0]] = x.reshape(x.shape[0], *trailing).to(device)
    received = [torch.empty_like(buffer) for _ in range(world_size)]
    dist.all_gather(received, buffer)
    return [r[:n].cpu() for r, n in zip(received, sizes)]


def gather_by_index(rows: torch.Tensor, indices: torch.Tensor, n: int) -> torch.Tensor:
    """Collect every process's ``rows`` ``[n_local, ...]`` (for global ``indices`` ``[n_local]``)
    into one ``[N, ...]`` tensor ordered by global index, on every process (CPU).

    Raises ``RuntimeError`` unless the processes together returned exactly ``n`` distinct indices
    ``0 … n−1`` — a padded or overlapping split would fail here instead of biasing a metric.
    """
    indices = indices.to(torch.long).cpu()
    if rows.shape[0] != indices.shape[0]:
        raise ValueError(f"gather_by_index: {rows.shape[0]} rows but {indices.shape[0]} indices")
    rank, world_size = rank_and_world_size()
    if world_size > 1:
        all_rows = torch.cat(_all_gather_variable(rows.detach()))
        all_idx = torch.cat(_all_gather_variable(indices))
    else:
        all_rows, all_idx = rows.detach().cpu(), indices
    if all_idx.numel() != n:
        raise RuntimeError(f"distributed evaluation gathered {all_idx.numel()} samples from {world_size} processes, expected exactly N={n}")
    if not torch.equal(all_idx.sort().values, torch.arange(n)):
        raise RuntimeError(f"distributed evaluation: gathered indices are not a permutation of 0..{n - 1} (duplicates or gaps)")
    out = torch.empty_like(all_rows)
    out[all_idx] = all_rows
    return out


def all_reduce_max(value: int) -> int:
    """The largest ``value`` over all processes (the value itself without a process group)."""
    if rank_and_world_size()[1] == 1:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def rank_zero_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 first, then on the other ranks (e.g. build a cache that the others
    then read). Without a process group, just ``fn()``."""
    rank, world_size = rank_and_world_size()
    if world_size == 1:
        return fn()
    if rank == 0:
        out = fn()
        dist.barrier()
        return out
    dist.barrier()
    return fn()


@torch.no_grad()
def draw_samples(
    module,
    n: int,
    seed: int,
    batch_size: int,
    use_ema: bool = True,
    mode: str = "contiguous",
    progress: bool = False,
    sampler=None,
    guidance=None,
    y=None,
    sampler_fn=None,
) -> Iterator[SampleBatch]:
    """Yield this process's batches of samples from ``module`` (a generative module: anything with
    ``denoiser(use_ema)``, ``sampler``, ``data_shape`` and ``device``).

    Every batch goes through :func:`diffzoo.samplers.sample_indices`, the loop ``diffzoo-sample``
    uses too: sample ``i`` depends only on ``(seed, i)``, so sample ``i`` here equals sample ``i``
    there, on any number of processes. ``sampler`` (a :class:`~diffzoo.samplers.SamplerSpec`)
    replaces the module's own; ``guidance`` wraps the denoiser; a class-conditional or guided model
    gets labels ``y`` per global index (:func:`diffzoo.guidance.labels.labels_for_indices`: ``None``
    cycles through the classes). ``sampler_fn``: a callable with the signature
    :func:`~diffzoo.samplers.sample_indices` takes, used as is instead of ``sampler`` (e.g. one that
    also measures the path, :func:`~diffzoo.metrics.straightness.straightness_records`). The
    training RNG state is left untouched.
    """
    from ..guidance.labels import labels_for_indices, num_classes_of
    from ..samplers import SamplerSpec, sample_indices
    from ..utils.progress import track

    spec = sampler_fn or (SamplerSpec.of(sampler) if sampler is not None else module.sampler)
    denoiser = module.denoiser(use_ema)
    needs_labels = guidance is not None or "y" in denoiser.cond_keys
    num_classes = num_classes_of(getattr(module, "net", None), getattr(guidance, "classifier", None)) if needs_labels else None
    rank, world_size = rank_and_world_size()
    batches = shard_batches(n, batch_size, rank, world_size, mode)
    was_training = module.training
    module.eval()
    try:
        for idx in track(batches, total=len(batches), description=f"sampling (rank {rank})", enabled=progress):
            labels = labels_for_indices(idx, y, num_classes) if needs_labels else None
            yield sample_indices(denoiser, spec, idx, seed, module.data_shape, device=module.device, guidance=guidance,
                                 labels=labels)
    finally:
        module.train(was_training)
