"""Ancestral sampling (Ho et al. 2020, DDPM Algorithm 2) over the denoiser contract.

Each step from ``t`` to the next smaller time ``s`` of the grid (after the smallest: clean data)
draws from the model's reverse step ``p_θ(x_s | x_t) = N(μ̃(x̂₀, x_t), Σ)`` with the posterior mean
of :meth:`~diffzoo.schedules.process.GaussianProcess.posterior` (DDPM eqs. 6–7 evaluated at x̂₀,
eq. 15) and ``Σ`` one of:

* ``"fixedlarge"``: ``σ²_{t|s}`` (DDPM's σ² = β of the chain through the grid);
* ``"fixedsmall"``: ``β̃ = σ²_{t|s} σ_s²/σ_t²`` (DDPM's σ² = β̃);
* ``"learned_range"``: ``log Σ = v' log β + (1 − v') log β̃`` with ``v' = (v + 1)/2`` from the
  network's extra channels (Nichol & Dhariwal 2021, eq. 15).

On the full grid of a DDPM schedule this is Algorithm 2; on a sub-grid it is the respaced chain of
Improved DDPM §4 (its β, β̃ follow from ᾱ on the grid); on a VE process it is SMLD's ancestral
sampler (Score SDE App. F). The last step returns the mean (no noise, Algorithm 2 line 4). A
guidance term in the mean form (``Prediction.mean_shift`` = g, ADM Algorithm 1) moves the mean by
``Σ·g``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..denoisers import ClipX0, Denoiser, eps_denoiser
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like
from .plan import SamplingPlan, counted, grid_of

__all__ = ["ddpm", "VARIANCES"]

VARIANCES = ("fixedlarge", "fixedsmall", "learned_range")


def _plan(process, steps: int | None = None, spacing: str = "even", **_) -> SamplingPlan:
    grid = grid_of(process, steps, spacing)
    return SamplingPlan(grid, len(grid))


@torch.no_grad()
def _ddpm(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    steps: int | None = None,
    *,
    variance: str = "fixedlarge",
    clip_x0: bool = True,
    spacing: str = "even",
    generator: GeneratorLike = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
    project: Callable[[torch.Tensor, object], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Draw ``x_0`` by ancestral sampling (module docstring).

    Args:
        denoiser: the model (:class:`~diffzoo.denoisers.Denoiser`), any forward process.
        x_T: ``[B, C, …]`` starting noise (``denoiser.process.prior_sample``).
        steps: the NFE budget = number of steps (``None``: every step of a discrete schedule, the
            SDE's ``N``); fewer steps respace the chain (Improved DDPM §4) over ``spacing``.
        variance: one of :data:`VARIANCES`.
        clip_x0: clip x̂₀ to the data range before forming the mean (DDPM code; applied below
            classifier guidance, as guided-diffusion does).
        spacing: ``"even"`` (both ends, improved-diffusion's respacing), ``"uniform"`` or ``"quad"``.
        generator: ``None``, a generator, or one per sample (``diffzoo.utils.random``).
        callback: called after every step with ``{"i", "t", "x", "x0", "nfe"}``.
        project: ``project(x, t) → x`` applied to ``x_T`` (at the grid's first time) and after every
            step (at the step's new time; ``None`` after the last) — e.g. replacement inpainting
            (:func:`~diffzoo.samplers.inpaint.replace_inpaint`).
    Returns: ``x_0`` ``[B, C, …]``.
    """
    if variance not in VARIANCES:
        raise ValueError(f"sampler.variance must be one of {', '.join(VARIANCES)}; got {variance!r}")
    if clip_x0:
        denoiser = denoiser.with_x0_transform(ClipX0(*denoiser.data_range))
    process = denoiser.process
    grid = _plan(process, steps, spacing).grid
    count = counted(callback)
    x = x_T if project is None else project(x_T, grid[len(grid) - 1])
    for i in track(reversed(range(len(grid))), total=len(grid), description="DDPM", enabled=progress):
        t = grid[i]
        step = process.posterior(t, grid[i - 1] if i > 0 else None)
        p = denoiser.predict(x, t)
        mean = step.coef_x0 * p.x0 + step.coef_xt * x  # DDPM eq. 7: μ̃_t(x̂_0, x_t)
        if i > 0 or p.mean_shift is not None or variance == "learned_range":
            var, std = _variance(process, grid, i, step, variance, p, x.shape[1])
            if p.mean_shift is not None:
                mean = mean + var * p.mean_shift  # ADM Algorithm 1: μ + s Σ ∇ log p_φ(y | x_t)
        x = mean + std * randn_like(x, generator) if i > 0 else mean  # Algorithm 2, line 4: no noise on the last step
        if project is not None:
            x = project(x, grid[i - 1] if i > 0 else None)
        count({"i": i, "t": t, "x": x, "x0": p.x0})
    return x


def _variance(process, grid, i: int, step, variance: str, p, channels: int):
    """``(Σ, std)`` of the reverse step at grid position ``i`` (floats, or tensors for a learned Σ).

    On the last step (``i = 0``, into clean data) the posterior variance is 0; as in the DDPM /
    guided-diffusion code, log β̃ there is clipped to the next step's β̃ and "fixedlarge" uses that
    β̃ too, while "fixedsmall" keeps Σ = 0 (it only moves ADM's mean-form guidance, which guided-
    diffusion scales by this Σ: no shift on the last step)."""
    small = step.var_small if i > 0 else (process.posterior(grid[1], grid[0]).var_small if len(grid) > 1 else step.var_large)
    if variance == "learned_range":
        if p.extra is None or p.extra.shape[1] < channels:
            raise ValueError("variance='learned_range' needs a network with 2C output channels "
                             "(net.out_channels = 2 × the data's channels)")
        frac = (p.extra[:, :channels] + 1) / 2  # iDDPM eq. 15: log Σ between log β̃ (v = −1) and log β (v = +1)
        log_var = frac * math.log(step.var_large) + (1 - frac) * math.log(small)
        return torch.exp(log_var), torch.exp(0.5 * log_var)
    if variance == "fixedlarge":
        var = step.var_large if i > 0 else small
    else:
        var = step.var_small
    return var, math.sqrt(var)


def _legacy(eps_fn, schedule, x_T, variance="fixedlarge", clip_x0=True, generator=None, callback=None, progress=False):
    return _ddpm(eps_denoiser(eps_fn, schedule), x_T, variance=variance, clip_x0=clip_x0, generator=generator,
                 callback=callback, progress=progress)


def ddpm(*args, **kwargs) -> torch.Tensor:
    """DDPM ancestral sampling (Algorithm 2), two call forms:

    * ``ddpm(denoiser, x_T, steps=None, *, variance, clip_x0, spacing, generator, callback, progress)``
      (see :func:`_ddpm`);
    * ``ddpm(eps_fn, schedule, x_T, variance="fixedlarge", clip_x0=True, generator=None, callback=None,
      progress=False)`` — ``eps_fn(x, t)`` with ``t`` int64 indices into the original schedule, over every
      step of ``schedule`` (respaced or not).
    """
    if args and isinstance(args[0], Denoiser):
        return _ddpm(*args, **kwargs)
    return _legacy(*args, **kwargs)


ddpm.plan = _plan
ddpm.core = _ddpm
ddpm.takes_mean_shift = True
