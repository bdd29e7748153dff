"""Langevin dynamics and annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) over the denoiser
contract, and the one Langevin update every Langevin-type sampler uses (:func:`langevin_update`).

Step conventions — the same step size means two different chains in the NCSN paper and in
its image code, so both are offered and named:

* ``"paper"`` (NCSN Alg. 1, §3.3; also NCSN's toy code):  ``x ← x + (α/2) s(x) + √α z``;
* ``"code"`` (NCSN / NCSNv2 image samplers):                  ``x ← x + α s(x) + √(2α) z``.

Both discretise the Langevin diffusion ``dx = ∇log p dt + √2 dW`` whose stationary law is p:
"paper" with time step α/2, "code" with time step α. So ``step_lr = ε`` under "code" is the
same chain as ``step_lr = 2ε`` under "paper" (NCSNv2's ε = 6.2e-6 is a "code" value; NCSN's
image ε = 2e-5 too; the toy's 0.1 is a "paper" value).

``callback`` receives, after every update, a dict with keys ``i`` (global step), ``level``
(noise-level index), ``x``, ``sigma`` (float) and ``nfe`` (score evaluations so far); the final
denoising step reports ``level = L`` (one past the last level).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, NamedTuple

import torch

from ..denoisers import Denoiser, score_denoiser
from ..schedules.ladder import SigmaLadder
from ..utils.random import randn_like
from .plan import SamplingPlan

__all__ = ["langevin", "annealed_langevin", "langevin_update", "LangevinUpdate", "STEP_CONVENTIONS"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
STEP_CONVENTIONS = ("code", "paper")


class LangevinUpdate(NamedTuple):
    """``x``: the new iterate; ``x_mean``: the same update without its noise."""

    x: torch.Tensor
    x_mean: torch.Tensor


def langevin_update(x: torch.Tensor, score: torch.Tensor, step, noise: torch.Tensor) -> LangevinUpdate:
    """One unadjusted Langevin step of time step ``ε`` (a float or ``[B, 1, …]``):
    ``x ← x + ε ∇log p(x) + √(2ε) z`` (Euler–Maruyama on ``dx = ∇log p dt + √2 dW``; NCSN code,
    Score SDE Alg. 4/5 lines 6–7)."""
    x_mean = x + step * score
    root = math.sqrt(2 * step) if isinstance(step, float) else torch.sqrt(2 * step)
    return LangevinUpdate(x_mean + root * noise, x_mean)


def _check_convention(step_convention: str) -> None:
    if step_convention not in STEP_CONVENTIONS:
        raise ValueError(f"step_convention must be one of {STEP_CONVENTIONS}; got {step_convention!r}")


def _time_step(alpha: float, step_convention: str) -> float:
    """The Langevin time step of step size α under a convention ("paper": α/2, "code": α)."""
    return 0.5 * alpha if step_convention == "paper" else alpha


def _progress(iterable, enabled: bool, total: int):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total)


@torch.no_grad()
def langevin(
    score_fn: ScoreFn,
    x: torch.Tensor,
    n_steps: int,
    step_size: float,
    sigma: float,
    step_convention: Literal["code", "paper"] = "code",
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Unadjusted Langevin dynamics at one fixed noise level σ (NCSN §2.2).

    Args:
        score_fn: ``score_fn(x, sigma)`` → ``∇ log p_σ(x)`` (or a denoiser on a σ ladder).
        x: ``[B, …]`` starting points.
        n_steps: number of updates (one score evaluation each).
        step_size: α, interpreted by ``step_convention`` (see the module docstring).
        sigma: the level passed to ``score_fn`` (use the smallest level for the data score).
    Returns: ``[B, …]`` the last iterate.
    """
    _check_convention(step_convention)
    if not step_size > 0 or n_steps < 0:
        raise ValueError(f"langevin: need step_size > 0 and n_steps >= 0, got {step_size}, {n_steps}")
    score = _score_of(score_fn)
    sig = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
    step = _time_step(step_size, step_convention)
    for i in _progress(range(n_steps), progress, n_steps):
        x = langevin_update(x, score(x, sig), step, randn_like(x, generator)).x
        if callback is not None:
            callback({"i": i, "level": 0, "x": x, "sigma": float(sigma), "nfe": i + 1})
    return x


def _score_of(model) -> ScoreFn:
    if isinstance(model, Denoiser):
        return lambda x, t: model.predict(x, t).score
    return model


def _plan(process, steps: int | None = None, n_steps_each: int = 100, denoise: bool = False, **_) -> SamplingPlan:
    """The levels walked (increasing σ) and the NFE: ``L'·n`` updates plus the denoising step."""
    if not hasattr(process, "plan"):
        raise ValueError(f"sampler=annealed_langevin walks a σ ladder (schedule=ncsn_sigmas / ncsnv2_sigmas), "
                         f"not a {type(process).__name__}; an SDE samples with sampler=pc, ode, ddim or ddpm")
    plan = process.plan(steps, int(n_steps_each))
    return SamplingPlan(sorted(plan.sigmas.tolist()), plan.sigmas.numel() * plan.n_steps_each + int(bool(denoise)))


@torch.no_grad()
def _annealed_langevin(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    steps: int | None = None,
    *,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    step_convention: Literal["code", "paper"] = "code",
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) with NCSNv2's final denoising step.

    For each level ``σ_i`` of the denoiser's :class:`~diffzoo.schedules.ladder.SigmaLadder`
    (largest first), ``n_steps_each`` Langevin updates with step ``α_i = ε · σ_i² / σ_L²``
    (Alg. 1, line 3); then, if ``denoise``, one Tweedie step ``x ← x + σ_L² s(x, σ_L)`` — the
    posterior mean E[x_0 | x] for Gaussian noise of std σ_L, as in the NCSNv2 sampler (proposed by
    Jolicoeur-Martineau et al. 2020) — which costs one more score evaluation.

    Args:
        denoiser: the model on a σ ladder.
        x_T: ``[B, …]`` starting points (the ladder's ``prior_sample``: NCSN / NCSNv2 start from U[0, 1]).
        steps: budget of Langevin updates (``None``: ``L · n_steps_each``); a smaller budget
            spreads over the levels as :meth:`SigmaLadder.plan` says.
        n_steps_each: T, updates per level.
        step_lr: ε; interpreted by ``step_convention`` (see the module docstring).
        denoise: add the final denoising step.
    Returns: ``[B, …]`` the final sample. NFE = ``L' · n_steps_each + denoise``.
    """
    _check_convention(step_convention)
    if not step_lr > 0 or n_steps_each < 1:
        raise ValueError(f"annealed_langevin: need step_lr > 0 and n_steps_each >= 1, got {step_lr}, {n_steps_each}")
    process = denoiser.process
    _plan(process)  # a clear error for a process that is not a ladder
    plan = process.plan(steps, int(n_steps_each))
    sigmas = plan.sigmas
    L, B = sigmas.numel(), x_T.shape[0]
    sigma_L = float(sigmas[-1])
    x, nfe = x_T, 0
    for level in _progress(range(L), progress, L):
        sigma = float(sigmas[level])
        sig = torch.full((B,), sigma, dtype=x.dtype, device=x.device)
        step = _time_step(step_lr * (sigma / sigma_L) ** 2, step_convention)  # Alg. 1, line 3: α_i = ε σ_i² / σ_L²
        for _ in range(plan.n_steps_each):
            x = langevin_update(x, denoiser.predict(x, sig).score, step, randn_like(x, generator)).x  # lines 4–6
            nfe += 1
            if callback is not None:
                callback({"i": nfe - 1, "level": level, "x": x, "sigma": sigma, "nfe": nfe})
    if denoise:
        sig = torch.full((B,), sigma_L, dtype=x.dtype, device=x.device)
        x = x + sigma_L**2 * denoiser.predict(x, sig).score  # Tweedie: E[x_0 | x] = x + σ_L² ∇log p_σL(x)
        nfe += 1
        if callback is not None:
            callback({"i": nfe - 1, "level": L, "x": x, "sigma": sigma_L, "nfe": nfe})
    return x


def _legacy(score_fn, sigmas, x, n_steps_each=100, step_lr=2e-5, denoise=True, step_convention="code", generator=None,
            callback=None, progress=False):
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if sigmas.numel() < 1 or bool((sigmas <= 0).any()) or bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise ValueError("annealed_langevin: sigmas must be positive and strictly decreasing (σ_1 > … > σ_L)")
    return _annealed_langevin(score_denoiser(score_fn, SigmaLadder(sigmas=sigmas.tolist())), x, n_steps_each=n_steps_each,
                              step_lr=step_lr, denoise=denoise, step_convention=step_convention, generator=generator,
                              callback=callback, progress=progress)


def annealed_langevin(*args, **kwargs) -> torch.Tensor:
    """Annealed Langevin dynamics (NCSN Alg. 1), two call forms:

    * ``annealed_langevin(denoiser, x_T, steps=None, *, n_steps_each, step_lr, denoise, step_convention, …)``
      (see :func:`_annealed_langevin`);
    * ``annealed_langevin(score_fn, sigmas, x, n_steps_each=100, step_lr=2e-5, denoise=True,
      step_convention="code", generator=None, callback=None, progress=False)`` — ``score_fn(x, σ)``
      with σ float ``[B]``, ``sigmas`` float ``[L]`` strictly decreasing.
    """
    if args and isinstance(args[0], Denoiser):
        return _annealed_langevin(*args, **kwargs)
    return _legacy(*args, **kwargs)


annealed_langevin.plan = _plan
annealed_langevin.core = _annealed_langevin
