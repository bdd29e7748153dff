"""DDIM sampling (Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models") over the denoiser
contract.

One generalised step from ``t`` to the next smaller grid time ``s`` (DDIM eq. 12, written with the
process's α and σ so that it holds for any Gaussian forward process):

    x_s = α_s · x̂₀ + √(σ_s² − c²) · ε̂(x_t, t) + c z,     c = η · √β̃,   β̃ = σ²_{t|s} σ_s²/σ_t²,

which for DDPM's ``α = √ᾱ``, ``σ = √(1 − ᾱ)`` is eq. 12 with ``σ_t(η)`` of eq. 16: η = 0 is the
deterministic DDIM, η = 1 over every step is DDPM with ``σ² = β̃``. The step after the smallest grid
time goes to clean data (the DDIM code pads ᾱ with 1), so it returns x̂₀.

The ``σ̂`` row of DDIM Table 1 uses DDPM's larger variance on the sub-sequence, ``σ̂² = σ²_{t|s}``
(``1 − ᾱ_t/ᾱ_s``); as in the DDIM code (``functions/denoising.py::ddpm_steps``) it is an ancestral
step with the posterior mean μ̃(x̂₀, x_t) (eq. 12's ``√(σ_s² − σ̂²)`` can be imaginary), and x̂₀ is
clipped to the data range there (``ddpm_steps`` clamps; ``generalized_steps``, the η rows, does not).

The grid is the process's (:meth:`~diffzoo.schedules.process.GaussianProcess.time_grid`): for a
DDPM schedule ``"uniform"`` is the DDIM code's ``range(0, T, T // S)`` (exactly S steps that reach
the top of the chain even when S does not divide T) and ``"quad"`` its quadratic sequence; for an
SDE evenly (or quadratically) spaced times from 1 down to ``sampling_eps``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..denoisers import ClipX0, Denoiser, eps_denoiser
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like
from .plan import SamplingPlan, counted, grid_of

__all__ = ["ddim", "ddim_sigma", "DDIM_SKIPS"]

DDIM_SKIPS = ("uniform", "quad")


def ddim_sigma(alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """``σ_t(η) = η √((1 − ᾱ_s)/(1 − ᾱ_t)) · √(1 − ᾱ_t/ᾱ_s)`` (DDIM eq. 16), element-wise.

    ``alpha_bar`` = ᾱ_t and ``alpha_bar_prev`` = ᾱ_s for the step t → s (any equal shapes).
    """
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()


def _plan(process, steps: int | None = None, skip: str = "uniform", **_) -> SamplingPlan:
    if skip not in DDIM_SKIPS:
        raise ValueError(f"sampler.skip must be one of {', '.join(DDIM_SKIPS)}; got {skip!r}")
    grid = grid_of(process, steps, skip)
    return SamplingPlan(grid, len(grid))


@torch.no_grad()
def _ddim(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    steps: int | None = None,
    *,
    eta: float = 0.0,
    skip: str = "uniform",
    clip_x0: bool | None = None,
    sigma_hat: bool = False,
    generator: GeneratorLike = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw ``x_0`` with the generalised DDIM update (module docstring).

    Args:
        denoiser: the model (any forward process).
        x_T: ``[B, C, …]`` starting noise.
        steps: S, the number of steps (= NFE); ``None``: the process's default (all T steps).
        eta: η ∈ [0, 1] of eq. 16.
        skip: ``"uniform"`` or ``"quad"`` (DDIM §4.2, code ``skip_type``).
        clip_x0: clip x̂₀ to the data range and use the ε consistent with it (improved-diffusion
            ``ddim_sample``); ``None``: as the DDIM code — off for the η rows, on for σ̂.
        sigma_hat: the σ̂ row of Table 1 (requires ``eta = 0``).
        generator: ``None``, a generator, or one per sample.
        callback: called after every step with ``{"i", "t", "x", "x0", "nfe"}``.
    Returns: ``x_0`` ``[B, C, …]``.
    """
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"sampler.eta must be in [0, 1] (DDIM eq. 16), got {eta!r}")
    if sigma_hat and eta != 0:
        raise ValueError("sampler.sigma_hat=true replaces sigma_t(eta) by sigma-hat (DDIM Table 1); set sampler.eta=0")
    if denoiser.mean_shift_form:
        raise ValueError("guidance.form=mean is ADM's ancestral mean shift (Algorithm 1): use sampler=ddpm, or guidance.form=eps")
    if clip_x0 if clip_x0 is not None else sigma_hat:
        denoiser = denoiser.with_x0_transform(ClipX0(*denoiser.data_range))
    process = denoiser.process
    grid = _plan(process, steps, skip).grid
    count = counted(callback)
    x = x_T
    for i in track(reversed(range(len(grid))), total=len(grid), description="DDIM", enabled=progress):
        t = grid[i]
        step = process.posterior(t, grid[i - 1] if i > 0 else None)
        p = denoiser.predict(x, t)
        if sigma_hat:
            # DDIM Table 1, σ̂: x_s = μ̃(x̂_0, x_t) + σ̂ z with σ̂² = σ²_{t|s} (= 1 − ᾱ_t/ᾱ_s).
            x = step.coef_x0 * p.x0 + step.coef_xt * x
            if i > 0:
                x = x + math.sqrt(step.var_large) * randn_like(x, generator)
        else:
            c = eta * math.sqrt(step.var_small)  # DDIM eq. 16
            x = step.alpha_s * p.x0 + math.sqrt(max(step.sigma_s**2 - c**2, 0.0)) * p.eps  # DDIM eq. 12
            if c > 0 and i > 0:  # c = 0 on the last step (σ_s = 0)
                x = x + c * randn_like(x, generator)
        count({"i": i, "t": t, "x": x, "x0": p.x0})
    return x


def _legacy(eps_fn, schedule, x_T, steps, eta=0.0, skip="uniform", clip_x0=None, sigma_hat=False, generator=None,
            callback=None, progress=False):
    return _ddim(eps_denoiser(eps_fn, schedule), x_T, steps, eta=eta, skip=skip, clip_x0=clip_x0, sigma_hat=sigma_hat,
                 generator=generator, callback=callback, progress=progress)


def ddim(*args, **kwargs) -> torch.Tensor:
    """DDIM sampling, two call forms:

    * ``ddim(denoiser, x_T, steps=None, *, eta, skip, clip_x0, sigma_hat, generator, callback, progress)``;
    * ``ddim(eps_fn, schedule, x_T, steps, eta=0.0, skip="uniform", clip_x0=None, sigma_hat=False, …)`` —
      ``eps_fn(x, t)`` with ``t`` int64 indices into the original schedule; ``steps`` counts steps of
      ``schedule`` (respaced or not).
    """
    if args and isinstance(args[0], Denoiser):
        return _ddim(*args, **kwargs)
    return _legacy(*args, **kwargs)


ddim.plan = _plan
ddim.core = _ddim
