"""Predictor–corrector sampling for score SDEs (Song et al. 2021, Score SDE §4.2, Alg. 1–5).

Each step at time ``t_i`` (from ``T`` down to ``eps``) first runs a *corrector* (score-based
MCMC at fixed ``t``), then a *predictor* (one step of a numerical solver of the reverse-time
SDE, eq. 6). Predictors and correctors are registered by name and any pair composes:

* predictors — ``reverse_diffusion`` (App. E), ``euler_maruyama``, ``ancestral`` (eq. 4 / App. F),
  ``none``;
* correctors — ``langevin`` (Alg. 4/5, signal-to-noise ratio ``snr``), ``annealed_langevin``
  (NCSN Alg. 1 with step ``2α(rσ(t))²``), ``none``.

Every update returns :class:`PCStep` ``(x, x_mean)``: the new sample and the same update
without its last noise draw. The final denoising step of Score SDE is returning ``x_mean`` of
the last update (at ``t = eps``) instead of ``x``.

Nothing here branches on the SDE type: discretisations, ancestral steps and the Langevin
``α_i`` are methods of the SDE (:mod:`diffzoo.schedules.sde`).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, NamedTuple, Protocol

import torch

from ..denoisers import Denoiser, as_sde_denoiser, score_denoiser
from ..schedules.sde import SDE
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like
from ..utils.tensors import bcast
from .langevin import langevin_update
from .plan import SamplingPlan

__all__ = [
    "pc",
    "PCStep",
    "PREDICTORS",
    "CORRECTORS",
    "register_predictor",
    "register_corrector",
    "CountingScore",
]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepNorm = Literal["batch", "sample"]
STEP_NORMS = ("batch", "sample")


class PCStep(NamedTuple):
    """Result of one predictor or corrector update: ``x`` (with noise) and ``x_mean`` (without),
    both shaped like the input."""

    x: torch.Tensor
    x_mean: torch.Tensor


class Predictor(Protocol):
    def __call__(self, sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, generator: GeneratorLike) -> PCStep: ...


class Corrector(Protocol):
    def __call__(
        self, sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, generator: GeneratorLike,
        *, snr: float, n_steps: int, step_norm: StepNorm,
    ) -> PCStep: ...


PREDICTORS: dict[str, Predictor] = {}
CORRECTORS: dict[str, Corrector] = {}


def register_predictor(name: str):
    """Decorator adding a predictor ``fn(sde, score_fn, x, t, generator) → PCStep`` under ``name``."""

    def wrap(fn):
        PREDICTORS[name] = fn
        return fn

    return wrap


def register_corrector(name: str):
    """Decorator adding a corrector ``fn(sde, score_fn, x, t, generator, *, snr, n_steps, step_norm)``."""

    def wrap(fn):
        CORRECTORS[name] = fn
        return fn

    return wrap


class CountingScore:
    """Wraps ``score_fn(x, t)`` and counts its calls in ``.nfe`` (network evaluations)."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn
        self.nfe = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.score_fn(x, t).to(x.dtype)


# ---------------------------------------------------------------------- predictors
@register_predictor("euler_maruyama")
def euler_maruyama_predictor(sde, score_fn, x, t, generator) -> PCStep:
    """Euler–Maruyama on the reverse SDE (eq. 6) with ``Δt = −T/N``:
    ``x ← x − [f − g²s]|Δt| + g√|Δt| z``."""
    dt = -sde.T / sde.N
    drift, diffusion = sde.reverse(score_fn).sde(x, t)
    x_mean = x + drift * dt
    return PCStep(x_mean + bcast(diffusion, x) * math.sqrt(-dt) * randn_like(x, generator), x_mean)


@register_predictor("reverse_diffusion")
def reverse_diffusion_predictor(sde, score_fn, x, t, generator) -> PCStep:
    """Reverse diffusion (Score SDE App. E): discretise the reverse SDE like the forward one,
    ``x_i = x_{i+1} − f_{i+1} + G²_{i+1} s + G_{i+1} z``."""
    f, G = sde.reverse(score_fn).discretize(x, t)
    x_mean = x - f
    return PCStep(x_mean + bcast(G, x) * randn_like(x, generator), x_mean)


@register_predictor("ancestral")
def ancestral_predictor(sde, score_fn, x, t, generator) -> PCStep:
    """Ancestral sampling of the SDE's discrete model (DDPM eq. 4 for VP, SMLD App. F for VE):
    ``x_{i−1} = mean(x_i, s) + std·z``, both supplied by :meth:`SDE.ancestral_step`."""
    mean, std = sde.ancestral_step(x, t, score_fn(x, t))
    return PCStep(mean + bcast(std, x) * randn_like(x, generator), mean)


@register_predictor("none")
def no_predictor(sde, score_fn, x, t, generator) -> PCStep:
    """Identity (corrector-only sampling, e.g. SMLD's annealed Langevin dynamics)."""
    return PCStep(x, x)


# ---------------------------------------------------------------------- correctors
def _norm(v: torch.Tensor, step_norm: StepNorm) -> torch.Tensor:
    """Per-sample L2 norm ``[B]``; with ``"batch"`` its batch mean broadcast to ``[B]``."""
    n = v.reshape(v.shape[0], -1).norm(dim=-1)
    return n.mean().expand_as(n) if step_norm == "batch" else n


@register_corrector("langevin")
def langevin_corrector(sde, score_fn, x, t, generator, *, snr, n_steps, step_norm) -> PCStep:
    """Langevin MCMC at fixed ``t`` (Score SDE Alg. 4 (VE) / Alg. 5 (VP)), ``n_steps`` times:
    ``ε = 2α_i (r‖z‖/‖s‖)²``, ``x ← x + ε s + √(2ε) z``."""
    alpha = sde.langevin_alpha(t).to(device=x.device, dtype=x.dtype)
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        noise = randn_like(x, generator)
        # Alg. 4/5 line 5: ε ← 2α_i (r‖z‖₂ / ‖s_θ‖₂)²
        step = 2 * alpha * (snr * _norm(noise, step_norm) / _norm(grad, step_norm)) ** 2
        x, x_mean = langevin_update(x, grad, bcast(step, x), noise)  # lines 6–7
    return PCStep(x, x_mean)


@register_corrector("annealed_langevin")
def annealed_langevin_corrector(sde, score_fn, x, t, generator, *, snr, n_steps, step_norm) -> PCStep:
    """SMLD's annealed Langevin step (NCSN Alg. 1, ``α_i = ε σ_i²/σ_L²``) written with the SNR:
    ``ε = 2α_i (r σ(t))²``, ``x ← x + ε s + √(2ε) z``, ``n_steps`` times."""
    step = bcast(2 * sde.langevin_alpha(t) * (snr * sde.sigma(t)) ** 2, x)
    x_mean = x
    for _ in range(n_steps):
        x, x_mean = langevin_update(x, score_fn(x, t), step, randn_like(x, generator))
    return PCStep(x, x_mean)


@register_corrector("none")
def no_corrector(sde, score_fn, x, t, generator, *, snr, n_steps, step_norm) -> PCStep:
    """Identity (predictor-only sampling)."""
    return PCStep(x, x)


def _lookup(table: dict, name: str, kind: str):
    if name not in table:
        raise ValueError(f"pc: unknown {kind} {name!r}; allowed: {sorted(table)}")
    return table[name]


# ---------------------------------------------------------------------- sampler
def _evaluations_per_step(predictor: str, corrector: str, n_corrector: int) -> int:
    return int(predictor != "none") + int(corrector != "none") * int(n_corrector)


def _plan(process, steps: int | None = None, predictor: str = "reverse_diffusion", corrector: str = "langevin",
          n_corrector: int = 1, eps: float = 1e-3, **_) -> SamplingPlan:
    """N time steps from T down to ``eps`` (``steps`` is the NFE budget: ``N = steps // per_step``,
    ``per_step`` = 1 for the predictor + ``n_corrector`` for the corrector)."""
    sde, _ = process.continuous_view()
    per_step = _evaluations_per_step(predictor, corrector, n_corrector)
    if per_step == 0:
        raise ValueError("pc: predictor and corrector cannot both be 'none'")
    N = sde.N if steps is None else int(steps) // per_step
    if N < 2:
        raise ValueError(f"sampler.steps={steps} is below two PC steps ({per_step} network evaluations each with "
                         f"predictor={predictor}, corrector={corrector}, n_corrector={n_corrector})")
    if not 0 < eps < sde.T:
        raise ValueError(f"pc: eps must lie in (0, {sde.T}), got {eps}")
    # Alg. 1: t_i = linspace(T, eps, N)[i] (decreasing), listed increasing like every plan's grid.
    return SamplingPlan(torch.linspace(sde.T, eps, N, dtype=torch.float64).tolist()[::-1], N * per_step)


@torch.no_grad()
def _pc(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    steps: int | None = None,
    *,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector: int = 1,
    eps: float = 1e-3,
    denoise: bool = True,
    step_norm: StepNorm = "sample",
    project: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], PCStep] | None = None,
    generator: GeneratorLike = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Predictor–corrector sampling (Score SDE Alg. 1; Alg. 2 for VE, Alg. 3 for VP).

    For ``i = 0 … N−1`` at ``t_i = linspace(T, eps, N)[i]``: corrector update, then predictor
    update (predictor step size ``T/N``). The denoiser is read on its SDE
    (:func:`~diffzoo.denoisers.as_sde_denoiser`): a Score SDE model's own, or for a DDPM model with a
    linear β table the VP SDE that table discretises.

    Args:
        denoiser: the model.
        x_T: ``[B, …]`` starting noise, normally the process's ``prior_sample``.
        steps: NFE budget; ``N = steps // (1 + n_corrector)`` time steps (``None``: the SDE's ``N``).
        predictor: one of :data:`PREDICTORS` (``reverse_diffusion``, ``euler_maruyama``,
            ``ancestral``, ``none``).
        corrector: one of :data:`CORRECTORS` (``langevin``, ``annealed_langevin``, ``none``).
        snr: the corrector's signal-to-noise ratio ``r`` (0.16 in the paper's CIFAR-10 runs).
        n_corrector: corrector steps per time step.
        eps: last time (``1e-3``, Score SDE App. G, avoids the singular score at ``t = 0``).
        denoise: return the last update without its noise (Score SDE's final denoising step).
        step_norm: Langevin's ``‖z‖/‖s‖`` per sample (``"sample"``, Alg. 4/5 as written: each sample
            independent of the rest of its batch — the default) or from batch-mean norms
            (``"batch"``, the reference code; couples the samples of a batch). In image dimensions
            the two agree to sampling error; for low-dimensional (toy) data the per-sample ratio is a
            noisy function of the state that biases the corrector — use ``"batch"`` or the
            ``annealed_langevin`` corrector (whose step depends on t only) there.
        project: optional ``project(x, x_mean, t) → PCStep`` applied after every update; used to
            condition on known values (:mod:`diffzoo.samplers.inpaint`, Score SDE App. I).
        generator: ``None``, a generator, or one per sample (``diffzoo.utils.random``).
        callback: called after every step with ``{"i", "t", "x", "x_mean", "nfe"}``
            (``nfe``: score evaluations so far).
    Returns: ``[B, …]`` sample at ``t = eps``.
    """
    predict = _lookup(PREDICTORS, predictor, "predictor")
    correct = _lookup(CORRECTORS, corrector, "corrector")
    if step_norm not in STEP_NORMS:
        raise ValueError(f"pc: unknown step_norm {step_norm!r}; allowed: {list(STEP_NORMS)}")
    if denoiser.mean_shift_form:
        raise ValueError("guidance.form=mean is ADM's ancestral mean shift (Algorithm 1): use sampler=ddpm, or guidance.form=eps")
    grid = _plan(denoiser.process, steps, predictor, corrector, n_corrector, eps).grid
    model = as_sde_denoiser(denoiser)
    sde = model.process.with_steps(len(grid))
    counted = CountingScore(lambda x, t: model.predict(x, t).score)
    B = x_T.shape[0]
    x = x_mean = x_T
    times = grid[::-1]
    for i, t_i in enumerate(track(times, total=len(times), description=f"PC {predictor}/{corrector}", enabled=progress)):
        t = torch.full((B,), t_i, device=x.device, dtype=x.dtype)
        x, x_mean = correct(sde, counted, x, t, generator, snr=snr, n_steps=n_corrector, step_norm=step_norm)
        if project is not None:
            x, x_mean = project(x, x_mean, t)
        x, x_mean = predict(sde, counted, x, t, generator)
        if project is not None:
            x, x_mean = project(x, x_mean, t)
        if callback is not None:
            callback({"i": i, "t": t_i, "x": x, "x_mean": x_mean, "nfe": counted.nfe})
    return x_mean if denoise else x


def _legacy(score_fn, sde, x_T, predictor="reverse_diffusion", corrector="langevin", snr=0.16, n_corrector=1, eps=1e-3,
            denoise=True, step_norm="sample", project=None, generator=None, callback=None, progress=False):
    return _pc(score_denoiser(score_fn, sde), x_T, predictor=predictor, corrector=corrector, snr=snr, n_corrector=n_corrector,
               eps=eps, denoise=denoise, step_norm=step_norm, project=project, generator=generator, callback=callback,
               progress=progress)


def pc(*args, **kwargs) -> torch.Tensor:
    """Predictor–corrector sampling (Score SDE Alg. 1), two call forms:

    * ``pc(denoiser, x_T, steps=None, *, predictor, corrector, snr, n_corrector, eps, denoise, step_norm,
      project, generator, callback, progress)`` (see :func:`_pc`);
    * ``pc(score_fn, sde, x_T, predictor="reverse_diffusion", corrector="langevin", snr=0.16, n_corrector=1,
      eps=1e-3, denoise=True, step_norm="sample", …)`` — ``score_fn(x, t)`` with float ``t`` ``[B]``;
      ``sde.N`` time steps.
    """
    if args and isinstance(args[0], Denoiser):
        return _pc(*args, **kwargs)
    return _legacy(*args, **kwargs)


pc.plan = _plan
pc.core = _pc
