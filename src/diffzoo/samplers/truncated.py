"""A reverse chain stopped at an intermediate time: the *truncated* conditioning augmentation of
Cascaded Diffusion Models (Ho, Saharia et al. 2021, §3.2).

Instead of sampling the low-resolution image ``z_0`` fully and corrupting it to ``z_s`` with the
forward process (non-truncated), the low-resolution model's reverse process is run from ``z_T``
only down to ``t_s`` and its ``z_s`` handed to the super-resolution stage. If the model's reverse
chain is exact, ``z_s ~ q(z_s)`` either way — the two differ only in the model's errors below
``t_s`` and in the network evaluations below ``t_s``, which truncation saves.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..denoisers import ClipX0, Denoiser
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like
from .plan import counted, grid_of

__all__ = ["ancestral_until", "truncated_grid"]


def truncated_grid(process, t_stop: float, steps: int | None = None, spacing: str = "even") -> list[float]:
    """The increasing times above ``t_stop`` of the ``steps``-step ancestral grid (``None``: the
    process's default), followed implicitly by ``t_stop``: the chain walks them from the largest and
    ends *at* ``t_stop``."""
    grid = [t for t in grid_of(process, steps, spacing) if t > float(t_stop)]
    if not grid:
        raise ValueError(f"truncated_grid: no grid time above t_stop={t_stop}: stop below t_max={process.t_max}")
    return grid


@torch.no_grad()
def ancestral_until(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    t_stop: float,
    steps: int | None = None,
    *,
    spacing: str = "even",
    clip_x0: bool = True,
    generator: GeneratorLike = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Ancestral sampling (DDPM Algorithm 2 with the posterior of
    :meth:`~diffzoo.schedules.process.GaussianProcess.posterior`) from ``x_T`` down to time ``t_stop``.

    Each step from ``t`` to the next time ``s`` (the last one: ``s = t_stop``) draws
    ``x_s ~ N(μ̃(x̂_0, x_t), σ̃²)`` with the posterior ``q(x_s | x_t, x̂_0)`` (DDPM eqs. 6–7, VDM eq. 6;
    Σ = the posterior variance β̃, ``fixedsmall``). The last step adds its noise too: the result is
    the noisy ``z_{t_stop}``, not a clean sample.

    Shapes: ``x_T`` ``[B, …]`` → ``[B, …]`` at ``t_stop`` (model coordinates).
    """
    if clip_x0:
        denoiser = denoiser.with_x0_transform(ClipX0(*denoiser.data_range))
    process = denoiser.process
    grid = truncated_grid(process, t_stop, steps, spacing)
    times = [float(t_stop)] + grid
    count = counted(callback)
    x = x_T
    for i in track(reversed(range(1, len(times))), total=len(grid), description="truncated", enabled=progress):
        t, s = times[i], times[i - 1]
        step = process.posterior(t, s)
        p = denoiser.predict(x, t)
        mean = step.coef_x0 * p.x0 + step.coef_xt * x  # DDPM eq. 7: μ̃(x̂_0, x_t)
        x = mean + step.var_small**0.5 * randn_like(x, generator)  # DDPM eq. 7: σ̃² = β̃ between t and s
        count({"i": i - 1, "t": s, "x": x, "x0": p.x0})
    return x
