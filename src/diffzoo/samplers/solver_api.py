"""What the few-step solvers (EDM, DPM-Solver, DPM-Solver++, UniPC) share: the noise level at a grid
time, the check of the denoiser they take, the discrete-time model adapter with **fractional** t, and
the two call forms every solver accepts:

* ``solver(denoiser, x_T, steps=None, *, <options>, generator=None, callback=None, progress=False)``;
* ``solver(eps_fn, schedule, x_T, steps=K, **options)`` — a discrete-time ε-model ``eps_fn(x, t)`` on a
  :class:`~diffzoo.schedules.DiscreteSchedule`, called with ``t`` a float tensor ``[B]`` of (possibly
  fractional) indices into the original schedule: the solvers' grids are real-valued
  (``log α`` interpolated between steps, DPM-Solver App. D).
"""

from __future__ import annotations

import inspect
import math
import weakref
from typing import Any, Callable, NamedTuple

import torch

from ..denoisers import Denoiser

__all__ = ["Level", "level", "levels_of", "memo", "time_of_lambda", "top_time", "bottom_time", "SIGMA_TILDE_MAX", "SIGMA_TILDE_MIN", "check_denoiser", "fractional_eps_denoiser", "solver_function", "budget_of"]


class Level(NamedTuple):
    """Process time ``t`` and its ``α``, ``σ`` and ``λ = log(α/σ)`` (Python floats; σ = 0, λ = ∞: clean data)."""

    t: float
    alpha: float
    sigma: float
    lam: float


def level(process, t: float) -> Level:
    """The :class:`Level` of process time ``t`` (λ = ∞ where σ = 0, −∞ where α = 0)."""
    a, s = process.alpha_sigma(float(t))
    lam = math.inf if s <= 0 else (-math.inf if a <= 0 else math.log(a) - math.log(s))
    return Level(float(t), a, s, lam)


# The largest noise level σ̃ = σ/α a grid starts from. A process whose signal vanishes at t_max (rectified
# flow: α(1) = 0, σ̃ = ∞) starts at the time where σ̃ equals it instead; its prior N(0, I) differs from
# that marginal N(α x₀, σ²) by α ≈ 1/SIGMA_TILDE_MAX of the data. EDM's σ_max (80) and the VE SDEs'
# (≤ 400) lie far below it, so their grids are unchanged.
SIGMA_TILDE_MAX = 1.0e4


def top_time(process) -> float:
    """The time a solver starts at: ``t_max``, or where ``σ̃ = SIGMA_TILDE_MAX`` when ``σ̃(t_max)`` is
    larger (infinite for rectified flow, whose α(1) = 0)."""
    t_hi = float(process.t_max)
    a, s = process.alpha_sigma(t_hi)
    if a > 0 and s / a <= SIGMA_TILDE_MAX:
        return t_hi
    return float(process.t_of_lambda(torch.tensor([-math.log(SIGMA_TILDE_MAX)], dtype=torch.float64))[0])


# The smallest noise level a grid ends at when the process reaches clean data itself (rectified flow at
# t = 0: σ̃ = 0, no log-SNR): EDM's σ_min (Karras et al. 2022, Table 1).
SIGMA_TILDE_MIN = 2.0e-3


def bottom_time(process) -> float:
    """The last time a solver evaluates the model at: ``sampling_eps``, or where ``σ̃ = SIGMA_TILDE_MIN``
    when the process is noise-free there (σ = 0)."""
    t_lo = float(process.sampling_eps)
    a, s = process.alpha_sigma(t_lo)
    if s > 0:
        return t_lo
    return float(process.t_of_lambda(torch.tensor([-math.log(SIGMA_TILDE_MIN)], dtype=torch.float64))[0])


_MEMO: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def memo(process, key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per ``(process, key)``: a solver's grid and levels depend only on the process and
    its options, and finding them (root finding, the optimised grid) costs more than a step. Cached values
    must not be mutated; the entry goes with the process."""
    try:
        table = _MEMO.setdefault(process, {})
    except TypeError:  # not weak-referenceable: no cache
        return compute()
    if key not in table:
        table[key] = compute()
    return table[key]


def levels_of(process, times) -> tuple[Level, ...]:
    """The :class:`Level` of each time of ``times`` (cached per process and times)."""
    times = tuple(float(t) for t in times)
    return memo(process, ("levels", times), lambda: tuple(level(process, t) for t in times))


def time_of_lambda(process, lam: float) -> float:
    """The process time with ``λ(t) = lam`` (λ decreases in t), clamped to ``[bottom_time, top_time]``: Brent's
    root finder on ``λ(t) − lam`` (~10 evaluations of α, σ where bisection to float precision takes ~60)."""
    from scipy.optimize import brentq

    lo, hi = bottom_time(process), top_time(process)
    lam = float(lam)
    if lam >= level(process, lo).lam:
        return lo
    if lam <= level(process, hi).lam:
        return hi
    return float(brentq(lambda t: level(process, t).lam - lam, lo, hi, xtol=1e-13 * max(1.0, hi), rtol=1e-15))


def check_denoiser(denoiser: Denoiser, name: str) -> None:
    """Refuse what a deterministic-grid solver cannot take (ADM's ancestral mean shift)."""
    if denoiser.mean_shift_form:
        raise ValueError(f"guidance.form=mean is ADM's ancestral mean shift (Algorithm 1): sampler={name} needs "
                         "guidance.form=eps (or sampler=ddpm)")


def budget_of(process, steps: int | None) -> int:
    """The NFE budget: ``steps``, or the process's default when ``None``."""
    if steps is None:
        steps = process.default_steps
        if steps is None:
            raise ValueError(f"sampler.steps must be set for a {type(process).__name__} process")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"sampler.steps={steps!r} must be a positive integer (the NFE budget)")
    return steps


def fractional_eps_denoiser(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule) -> Denoiser:
    """A denoiser from a discrete-time ``eps_fn(x, t) → ε̂`` on ``schedule`` that is evaluated at
    fractional indices: ``t`` is a float tensor ``[B]`` (x's dtype) of indices into the original
    schedule (:meth:`~diffzoo.schedules.DiscreteSchedule.model_time`), not rounded — unlike
    :func:`~diffzoo.denoisers.eps_denoiser`, whose ``eps_fn`` gets int64 indices."""
    if isinstance(eps_fn, Denoiser):
        return eps_fn
    return Denoiser(lambda x, tau: eps_fn(x, tau), schedule, "eps")


def solver_function(core: Callable, plan: Callable, name: str) -> Callable:
    """The public solver: dispatches the two call forms (module docstring) onto ``core`` and carries
    ``.core`` and ``.plan`` (what :class:`~diffzoo.samplers.SamplerSpec` reads); ``.plan`` fills the
    options it is not given with the core's defaults."""

    def solver(*args, **kwargs) -> torch.Tensor:
        if args and isinstance(args[0], Denoiser):
            return core(*args, **kwargs)
        if len(args) < 3:
            raise TypeError(f"{name}(denoiser, x_T, steps, …) or {name}(eps_fn, schedule, x_T, steps, …)")
        eps_fn, schedule, x_T, *rest = args
        return core(fractional_eps_denoiser(eps_fn, schedule), x_T, *rest, **kwargs)

    solver.__name__ = solver.__qualname__ = name
    solver.__doc__ = (f"{core.__doc__}\n\n    Call forms: ``{name}(denoiser, x_T, steps=None, *, options…)`` and "
                      f"``{name}(eps_fn, schedule, x_T, steps=K, **options)`` with ``eps_fn(x, t)`` at fractional "
                      "``t`` (float ``[B]``, original-schedule indices).")
    defaults = {k: p.default for k, p in inspect.signature(core).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("generator", "callback", "progress")}

    def planned(process, steps: int | None = None, **options):
        return plan(process, steps, **{**defaults, **options})  # the core's defaults, in one place

    solver.core = core
    solver.plan = planned
    return solver
