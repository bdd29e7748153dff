"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2)."""

from __future__ import annotations

from typing import Callable

import torch

from ..parameterization.reverse import check_variance_kind, p_mean_variance, split_model_output
from ..schedules.discrete import DiscreteSchedule
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like

__all__ = ["ddpm"]


@torch.no_grad()
def ddpm(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: DiscreteSchedule,
    x_T: torch.Tensor,
    variance: str = "fixedlarge",
    clip_x0: bool = True,
    generator: GeneratorLike = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw ``x_0 ~ p_θ`` by ancestral sampling through every step of ``schedule``.

    DDPM Algorithm 2: for t = T, …, 1: ``x_{t−1} = μ_θ(x_t, t) + σ_t z`` with z ~ N(0, I) for
    t > 1 and z = 0 at t = 1. The mean uses x̂_0 from ε (clipped to [-1, 1] when ``clip_x0``,
    as in the DDPM code), see :func:`diffzoo.parameterization.p_mean_variance`.

    Args:
        eps_fn: ``eps_fn(x, t) → [B, C, …]`` (or ``2C`` channels for ``learned_range``); ``t`` is
            an int64 ``[B]`` tensor of indices into the *original* schedule.
        schedule: a :class:`DiscreteSchedule`, possibly respaced (Improved DDPM §4).
        x_T: ``[B, C, …]`` starting noise.
        variance: ``"fixedlarge"`` (σ² = β), ``"fixedsmall"`` (σ² = β̃) or ``"learned_range"``.
        generator: ``None``, a generator, or one generator per sample (see ``utils.random``).
        callback: called after every step with ``{"i", "t", "x", "x0", "nfe"}``.
    Returns: ``x_0`` ``[B, C, …]``.
    """
    check_variance_kind(variance)
    x = x_T
    channels = x.shape[1]
    B = x.shape[0]
    for nfe, i in enumerate(track(reversed(range(schedule.T)), total=schedule.T, description="DDPM", enabled=progress), 1):
        t = torch.full((B,), i, dtype=torch.long, device=x.device)
        out = eps_fn(x, schedule.timesteps.to(x.device)[t])
        eps, v = split_model_output(out.to(x.dtype), channels, variance)
        moments = p_mean_variance(schedule, x, t, eps, variance, v=v, clip_x0=clip_x0)
        if i > 0:
            x = moments.mean + torch.exp(0.5 * moments.log_variance) * randn_like(x, generator)
        else:
            x = moments.mean  # Algorithm 2, line 4: no noise at t = 1
        if callback is not None:
            callback({"i": schedule.T - nfe, "t": int(schedule.timesteps[i]), "x": x, "x0": moments.x0, "nfe": nfe})
    return x
