"""Reflow pairs: (noise, ODE sample) couplings drawn from a trained flow (Liu et al. 2022, §2.2,
Algorithm 1: "draw (Z₀, Z₁) with Z₁ = ODE[v](Z₀)", then train the next flow on them).

Pair ``i`` is the prior draw ``x_1`` of sample ``i`` and what the sampler maps it to, both through
:func:`~diffzoo.samplers.sample_indices`: it depends on ``(seed, i)`` only, whatever the batch size.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from ..utils.random import per_sample_generators
from .loop import sample_indices

__all__ = ["ReflowPairs", "draw_pairs", "save_pairs", "load_pairs"]


class ReflowPairs(NamedTuple):
    """``noise`` ``[N, …]``: the starting points ``x_1`` (the model's coordinates); ``x0`` ``[N, …]``:
    the ODE's end point from each (the model's coordinates, i.e. before ``to_data``)."""

    noise: torch.Tensor
    x0: torch.Tensor


@torch.no_grad()
def draw_pairs(denoiser, sampler, n: int, seed: int, shape: Sequence[int], batch_size: int = 500,
               device=None) -> ReflowPairs:
    """``n`` pairs ``(x_1, ODE(x_1))`` from ``denoiser`` with ``sampler`` (a deterministic
    :class:`~diffzoo.samplers.SamplerSpec`: ``flow_euler`` / ``flow_heun`` / ``flow_rk45``)."""
    noises, ends = [], []
    for start in range(0, int(n), int(batch_size)):
        indices = list(range(start, min(start + int(batch_size), int(n))))
        batch = sample_indices(denoiser, sampler, indices, seed, shape, device=device)
        # the same draw sample_indices started from: generator (seed, "x_T", i)
        x1 = denoiser.process.prior_sample((len(indices), *shape), per_sample_generators(seed, indices, stream="x_T"),
                                           device=device)
        noises.append(x1)
        ends.append(denoiser.from_data(batch.x))
    return ReflowPairs(torch.cat(noises), torch.cat(ends))


def save_pairs(path, pairs: ReflowPairs, **meta) -> Path:
    """Write ``pairs`` (and ``meta``: the teacher, sampler and seed, for the record) to ``path`` (``.pt``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"noise": pairs.noise.cpu(), "x0": pairs.x0.cpu(), "meta": meta}, path)
    return path


def load_pairs(path) -> ReflowPairs:
    """The pairs written by :func:`save_pairs`."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    return ReflowPairs(data["noise"], data["x0"])
