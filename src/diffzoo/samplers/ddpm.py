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
    fixed = variance != "learned_range"
    # Every row shares the step, so with a fixed variance its coefficients are scalars: read once
    # from the float64 tables (as Python floats) instead of gathered per row at every step.
    coefficients = _fixed_variance_coefficients(schedule, variance) if fixed else None
    model_t = schedule.timesteps.tolist()
    for nfe, i in enumerate(track(reversed(range(schedule.T)), total=schedule.T, description="DDPM", enabled=progress), 1):
        out = eps_fn(x, torch.full((B,), model_t[i], dtype=torch.long, device=x.device))
        eps, v = split_model_output(out.to(x.dtype), channels, variance)
        if fixed:
            recip, recipm1, coef1, coef2, std = coefficients[i]
            x0 = recip * x - recipm1 * eps  # DDPM eq. 15
            if clip_x0:
                x0 = x0.clamp(-1, 1)
            mean = coef1 * x0 + coef2 * x  # DDPM eq. 7: μ̃_t(x̂_0, x_t)
        else:
            t = torch.full((B,), i, dtype=torch.long, device=x.device)
            moments = p_mean_variance(schedule, x, t, eps, variance, v=v, clip_x0=clip_x0)
            mean, x0, std = moments.mean, moments.x0, torch.exp(0.5 * moments.log_variance)
        if i > 0:
            x = mean + std * randn_like(x, generator)
        else:
            x = mean  # Algorithm 2, line 4: no noise at t = 1
        if callback is not None:
            callback({"i": schedule.T - nfe, "t": model_t[i], "x": x, "x0": x0, "nfe": nfe})
    return x


def _fixed_variance_coefficients(schedule: DiscreteSchedule, variance: str) -> list[tuple[float, ...]]:
    """Per step ``i``: (1/√ᾱ, √(1/ᾱ − 1), posterior-mean coef1, coef2, σ) as Python floats, where
    σ = exp(½ log σ²) of the fixed variance ``variance`` (the same tables ``p_mean_variance`` uses)."""
    std = torch.exp(0.5 * schedule.log_variance(variance))
    return list(zip(*(table.tolist() for table in (
        schedule.sqrt_recip_alphas_cumprod, schedule.sqrt_recipm1_alphas_cumprod,
        schedule.posterior_mean_coef1, schedule.posterior_mean_coef2, std))))
