"""ODE samplers of rectified flow / flow matching: Euler, Heun and adaptive RK45 on ``dx/dt = u(x, t)``.

They integrate the process's own time from ``t_max`` down to its ``sampling_eps`` (rectified flow:
from t = 1, the prior N(0, I), to t = 0, the data: Liu et al. 2022, §2, the ODE dZ_t = v(Z_t, t) dt,
in diffzoo's reversed time). The velocity is read through the denoiser contract: ``u = α'(t) x̂₀ +
σ'(t) ε̂`` (:func:`~diffzoo.schedules.flow.flow_from`) — the network's own output for a flow model,
and for any other model the probability-flow ODE of its process in that process's time (for x_t =
α x₀ + σ ε, E[dx_t/dt | x_t] = α' E[x₀|x_t] + σ' E[ε|x_t]: the minimiser of Liu et al. 2022, eq. 1,
and the marginal vector field of Lipman et al. 2023, eq. 8). So a flow model runs under DDIM or ancestral sampling (through its x̂₀ / ε̂ views)
and a VP, VE or EDM model runs under these solvers. A process whose α, σ are not differentiable
on its own grid (a DDPM table at its integer steps) is walked in the time of its continuous view
(a linear β table: the VP SDE it discretises, Score SDE App. B, as the ``ode`` sampler does); one
without either is refused with the reason.

* :func:`flow_euler` — ``x ← x + (t_{i+1} − t_i)·u(x, t_i)`` (the Euler method with uniform steps
  of Liu et al. 2022); one evaluation per step, first order.
* :func:`flow_heun` — Heun's second-order method (Karras et al. 2022, Algorithm 1, deterministic;
  applied to every step, including the last, since u is regular at t = 0); two evaluations per step.
* :func:`flow_rk45` — scipy's adaptive Dormand–Prince RK45 with ``rtol`` / ``atol`` (Liu et al.
  2022 sample 1-rectified flow with RK45, as Score SDE §4.3 does the probability-flow ODE).

``steps`` is the NFE budget (Euler: K steps; Heun: K // 2 steps; RK45: adaptive, leave it unset).

The first evaluation is at ``t_max``: on rectified flow α(1) = 0, where a flow model is regular but
an ε- or score-predicting model's x̂₀ = (x − σ ε̂)/α is not — such a model trained on that process is
singular there (none is: :class:`~diffzoo.lit.flow.FlowModule` predicts the velocity).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..denoisers import Denoiser, as_sde_denoiser, eps_denoiser
from ..schedules.flow import alpha_sigma_derivatives, flow_from
from ..schedules.process import SPACINGS
from ..utils.progress import track
from ..utils.random import GeneratorLike
from .ode import solve_flow
from .plan import Counter, SamplingPlan

__all__ = ["flow_euler", "flow_heun", "flow_rk45", "velocity", "flow_boundaries", "flow_process"]


def velocity(denoiser: Denoiser, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    """One evaluation: ``(u, x̂₀)`` ``[B, …]`` with ``u = α'(t) x̂₀ + σ'(t) ε̂`` (module docstring)."""
    p = denoiser.predict(x, t)
    return flow_from(p.process, p.x0, p.eps, t), p.x0


def flow_process(process):
    """The process whose time the solvers walk: ``process`` itself when it gives α', σ' (at ``t_max``),
    else its continuous-time view (:meth:`~diffzoo.schedules.process.GaussianProcess.continuous_view`);
    ``ValueError`` with both reasons when it has neither."""
    try:
        alpha_sigma_derivatives(process, float(process.t_max))
        return process
    except ValueError as err:
        try:
            return process.continuous_view()[0]
        except ValueError as no_view:
            raise ValueError(f"the flow samplers need alpha'(t), sigma'(t): {err}; {no_view}") from None


def _flow_denoiser(denoiser: Denoiser) -> Denoiser:
    """``denoiser`` on :func:`flow_process` of its process (retimed onto the continuous view if needed)."""
    return denoiser if flow_process(denoiser.process) is denoiser.process else as_sde_denoiser(denoiser)


def flow_boundaries(process, intervals: int, spacing: str = "uniform") -> list[float]:
    """``intervals + 1`` increasing times from ``process.sampling_eps`` to ``t_max`` (the ends of the
    solver's steps; ``spacing`` as :meth:`~diffzoo.schedules.process.GaussianProcess.time_grid`)."""
    if spacing not in SPACINGS:
        raise ValueError(f"sampler.spacing must be one of {list(SPACINGS)}; got {spacing!r}")
    return process.time_grid(int(intervals) + 1, spacing)


def _budget(process, steps: int | None, name: str) -> int:
    if steps is None:
        steps = process.default_steps
        if steps is None:
            raise ValueError(f"sampler.steps must be set for sampler={name} on a {type(process).__name__} process "
                             "(the NFE budget)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"sampler.steps={steps!r} must be a positive integer (the NFE budget)")
    return steps


def _refuse_mean_shift(denoiser: Denoiser) -> None:
    if denoiser.mean_shift_form:
        raise ValueError("guidance.form=mean is ADM's ancestral mean shift (Algorithm 1): use sampler=ddpm, or guidance.form=eps")


def _as_denoiser(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The ``(eps_fn, schedule, x_T, steps)`` call form of a discrete-time ε model → ``(denoiser, x_T, steps)``."""
    if args and isinstance(args[0], Denoiser):
        return args, kwargs
    eps_fn, schedule, *rest = args
    return (eps_denoiser(eps_fn, schedule), *rest), kwargs


# ---------------------------------------------------------------------- Euler
def _euler_plan(process, steps: int | None = None, spacing: str = "uniform", **_) -> SamplingPlan:
    process = flow_process(process)
    k = _budget(process, steps, "flow_euler")
    return SamplingPlan(flow_boundaries(process, k, spacing)[1:], k)


@torch.no_grad()
def _flow_euler(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, spacing: str = "uniform",
                generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
                progress: bool = False) -> torch.Tensor:
    """Euler's method on ``dx/dt = u(x, t)`` from ``t_max`` to ``sampling_eps``.

    Args:
        denoiser: any model whose process gives α', σ' (module docstring).
        x_T: ``[B, …]`` starting noise at ``t_max``.
        steps: K steps = K network evaluations.
        spacing: ``uniform`` (Liu et al. 2022: uniform steps) | ``quad`` | ``even``.
        generator: unused (deterministic), kept for the shared signature.
        callback: after each step, ``{"i", "t", "x", "x0", "velocity", "nfe"}`` (``t``: where u was read).
    Returns: ``x`` ``[B, …]`` at ``sampling_eps``.
    """
    _refuse_mean_shift(denoiser)
    denoiser = _flow_denoiser(denoiser)
    process = denoiser.process
    k = _budget(process, steps, "flow_euler")
    ts = flow_boundaries(process, k, spacing)
    count = Counter(callback)
    x = x_T
    for i in track(reversed(range(k)), total=k, description="flow Euler", enabled=progress):
        t, s = ts[i + 1], ts[i]
        u, x0 = velocity(denoiser, x, t)
        x = x + (s - t) * u  # Euler step of dx/dt = u, s < t
        count({"i": i, "t": t, "x": x, "x0": x0, "velocity": u})
    return x


def flow_euler(*args, **kwargs) -> torch.Tensor:
    """Euler sampling of a flow (see :func:`_flow_euler`); also ``flow_euler(eps_fn, schedule, x_T, steps)``."""
    args, kwargs = _as_denoiser(args, kwargs)
    return _flow_euler(*args, **kwargs)


flow_euler.plan = _euler_plan
flow_euler.core = _flow_euler


# ---------------------------------------------------------------------- Heun
def _heun_plan(process, steps: int | None = None, spacing: str = "uniform", **_) -> SamplingPlan:
    process = flow_process(process)
    budget = _budget(process, steps, "flow_heun")
    if budget < 2:
        raise ValueError(f"sampler=flow_heun spends 2 evaluations per step: sampler.steps={budget} must be at least 2")
    n = budget // 2
    return SamplingPlan(flow_boundaries(process, n, spacing), 2 * n)


@torch.no_grad()
def _flow_heun(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, spacing: str = "uniform",
               generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
               progress: bool = False) -> torch.Tensor:
    """Heun's method (Karras et al. 2022, Algorithm 1) on ``dx/dt = u(x, t)`` from ``t_max`` to ``sampling_eps``.

    Args: as :func:`_flow_euler`; ``steps`` is the NFE budget, ``steps // 2`` steps of two evaluations.
    Returns: ``x`` ``[B, …]`` at ``sampling_eps``.
    """
    _refuse_mean_shift(denoiser)
    denoiser = _flow_denoiser(denoiser)
    process = denoiser.process
    n = _heun_plan(process, steps, spacing).nfe // 2
    ts = flow_boundaries(process, n, spacing)
    count = Counter(callback)
    x = x_T
    for i in track(reversed(range(n)), total=n, description="flow Heun", enabled=progress):
        t, s = ts[i + 1], ts[i]
        d, x0 = velocity(denoiser, x, t)  # Alg. 1 line 4: d_i
        x_euler = x + (s - t) * d  # line 5: Euler step
        d_next, x0 = velocity(denoiser, x_euler, s)  # line 7: d'_i at the step's end
        x = x + (s - t) * 0.5 * (d + d_next)  # line 8: trapezoidal rule
        count({"i": i, "t": t, "x": x, "x0": x0, "velocity": d}, evaluations=2)
    return x


def flow_heun(*args, **kwargs) -> torch.Tensor:
    """Heun sampling of a flow (see :func:`_flow_heun`); also ``flow_heun(eps_fn, schedule, x_T, steps)``."""
    args, kwargs = _as_denoiser(args, kwargs)
    return _flow_heun(*args, **kwargs)


flow_heun.plan = _heun_plan
flow_heun.core = _flow_heun


# ---------------------------------------------------------------------- RK45 (adaptive)
def _rk45_plan(process, steps: int | None = None, **_) -> SamplingPlan:
    flow_process(process)  # a clear error for a process without α', σ'
    if steps is not None:
        raise ValueError(f"sampler=flow_rk45 is adaptive (scipy RK45): its network evaluations follow sampler.rtol / "
                         f"sampler.atol, not sampler.steps={steps}; leave sampler.steps unset (null)")
    return SamplingPlan([], None)


@torch.no_grad()
def _flow_rk45(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, rtol: float = 1e-5,
               atol: float = 1e-5, generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
               progress: bool = False) -> torch.Tensor:
    """scipy's RK45 on ``dx/dt = u(x, t)`` from ``t_max`` to ``sampling_eps``; the batch is one system
    (shared adaptive steps, as the reference code: a sample depends on its batch within the tolerance).

    Args: as :func:`_flow_euler`; ``steps`` must be ``None``; ``rtol`` / ``atol`` the tolerances.
    Returns: ``x`` ``[B, …]`` at ``sampling_eps``.
    """
    _refuse_mean_shift(denoiser)
    _rk45_plan(denoiser.process, steps)
    denoiser = _flow_denoiser(denoiser)
    process = denoiser.process
    shape, device, dtype = x_T.shape, x_T.device, x_T.dtype
    count = Counter(callback)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        u, x0 = velocity(denoiser, x, float(t))
        count({"i": count.nfe, "t": float(t), "x": x, "x0": x0, "velocity": u})
        if progress:
            print(f"\rflow RK45: t = {t:.4f}, nfe = {count.nfe}", end="", flush=True)
        return u.reshape(-1).double().cpu().numpy()

    y = solve_flow(rhs, x_T.reshape(-1).double().cpu().numpy(), (float(process.t_max), float(process.sampling_eps)),
                   float(rtol), float(atol), "RK45")
    if progress:
        print()
    return torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)


def flow_rk45(*args, **kwargs) -> torch.Tensor:
    """Adaptive RK45 sampling of a flow (see :func:`_flow_rk45`); also ``flow_rk45(eps_fn, schedule, x_T)``."""
    args, kwargs = _as_denoiser(args, kwargs)
    return _flow_rk45(*args, **kwargs)


flow_rk45.plan = _rk45_plan
flow_rk45.core = _flow_rk45
flow_rk45.adaptive = True
