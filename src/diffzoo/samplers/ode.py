"""Sampling by the probability-flow ODE (Song et al. 2021, Score SDE §4.3, eq. 13).

``dx/dt = f(x, t) − ½ g(t)² ∇_x log p_t(x)`` has the same marginals ``p_t`` as the forward
SDE; integrating it from ``T`` to ``eps`` with an adaptive Runge–Kutta solver (RK45 with
``rtol = atol = 1e-5`` in Score SDE §4.3) maps prior noise to data deterministically.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp

from ..denoisers import Denoiser, as_sde_denoiser, score_denoiser
from ..utils.random import GeneratorLike
from .pc import CountingScore
from .plan import SamplingPlan

__all__ = ["probability_flow_ode", "ODE_METHODS", "solve_flow"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The solvers scipy.integrate.solve_ivp accepts by name.
ODE_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


def _check_method(method: str) -> None:
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; allowed: {list(ODE_METHODS)}")


def solve_flow(rhs: Callable[[float, np.ndarray], np.ndarray], y0: np.ndarray, t_span: tuple[float, float],
               rtol: float, atol: float, method: str) -> np.ndarray:
    """Integrate ``dy/dt = rhs(t, y)`` over ``t_span`` with scipy; return ``y`` at the end
    (float64 ``[n]``). Raises with the solver's message when it fails."""
    _check_method(method)
    sol = solve_ivp(rhs, t_span, y0, rtol=rtol, atol=atol, method=method)
    if not sol.success:
        raise RuntimeError(f"ODE solver {method} failed on t ∈ {t_span}: {sol.message}")
    return sol.y[:, -1]


def _plan(process, steps: int | None = None, **_) -> SamplingPlan:
    """An adaptive solver: it picks its own times, and its NFE is known only after the solve."""
    process.continuous_view()  # a clear error for a process without an SDE
    if steps is not None:
        raise ValueError(f"sampler=ode is adaptive (scipy RK45): its network evaluations follow sampler.rtol / "
                         f"sampler.atol, not sampler.steps={steps}; leave sampler.steps unset (null)")
    return SamplingPlan([], None)


@torch.no_grad()
def _probability_flow_ode(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    steps: int | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "RK45",
    eps: float = 1e-3,
    denoise: bool = False,
    generator: GeneratorLike = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Solve the probability-flow ODE (Score SDE eq. 13) from ``t = T`` to ``t = eps``.

    Args:
        denoiser: the model, read on its SDE (:func:`~diffzoo.denoisers.as_sde_denoiser`: a Score SDE
            model's own, or the VP SDE of a DDPM model's linear β table).
        x_T: ``[B, …]`` starting noise (the process's ``prior_sample``); all samples are solved as one
            system, as in the reference code, so the adaptive steps are shared by the batch (a sample
            then depends on its batch within the solver's tolerance).
        steps: must be ``None`` (the solver is adaptive; see :func:`_plan`).
        rtol, atol: solver tolerances; method: one of :data:`ODE_METHODS`.
        eps: end time (1e-3 for sampling, as in Score SDE's sampling configs).
        denoise: finish with one noise-free reverse-diffusion step at ``eps`` (one more NFE).
        generator: unused (the ODE is deterministic); kept for the shared sampler signature.
        callback: called at every score evaluation with ``{"i", "t", "x", "nfe"}``; the last
            call carries the total ``nfe``.
        progress: print the solver's time and NFE while it runs.
    Returns: ``[B, …]`` sample at ``t = eps``.
    """
    _check_method(method)
    _plan(denoiser.process, steps)
    if denoiser.mean_shift_form:
        raise ValueError("guidance.form=mean is ADM's ancestral mean shift (Algorithm 1): use sampler=ddpm, or guidance.form=eps")
    model = as_sde_denoiser(denoiser)
    sde = model.process
    counted = CountingScore(lambda x, t: model.predict(x, t).score)
    flow = sde.reverse(counted, probability_flow=True)
    shape, device, dtype = x_T.shape, x_T.device, x_T.dtype

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        drift = flow.sde(x, torch.full((shape[0],), t, device=device, dtype=dtype)).drift
        if callback is not None:
            callback({"i": counted.nfe - 1, "t": t, "x": x, "nfe": counted.nfe})
        if progress:
            print(f"\rprobability-flow ODE: t = {t:.4f}, nfe = {counted.nfe}", end="", flush=True)
        return drift.reshape(-1).double().cpu().numpy()

    y0 = x_T.reshape(-1).double().cpu().numpy()
    y = solve_flow(rhs, y0, (sde.T, eps), rtol, atol, method)
    if progress:
        print()
    x = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
    if denoise:
        # Reverse-diffusion predictor at t = eps without noise (Score SDE App. E).
        t = torch.full((shape[0],), eps, device=device, dtype=dtype)
        x = x - sde.reverse(counted).discretize(x, t).f
        if callback is not None:
            callback({"i": counted.nfe - 1, "t": eps, "x": x, "nfe": counted.nfe})
    return x


def _legacy(score_fn, sde, x_T, rtol=1e-5, atol=1e-5, method="RK45", eps=1e-3, denoise=False, generator=None,
            callback=None, progress=False):
    return _probability_flow_ode(score_denoiser(score_fn, sde), x_T, rtol=rtol, atol=atol, method=method, eps=eps,
                                 denoise=denoise, generator=generator, callback=callback, progress=progress)


def probability_flow_ode(*args, **kwargs) -> torch.Tensor:
    """The probability-flow ODE sampler (Score SDE §4.3), two call forms:

    * ``probability_flow_ode(denoiser, x_T, steps=None, *, rtol, atol, method, eps, denoise, …)``
      (see :func:`_probability_flow_ode`);
    * ``probability_flow_ode(score_fn, sde, x_T, rtol=1e-5, atol=1e-5, method="RK45", eps=1e-3,
      denoise=False, …)`` — ``score_fn(x, t)`` with float ``t`` ``[B]``.
    """
    if args and isinstance(args[0], Denoiser):
        return _probability_flow_ode(*args, **kwargs)
    return _legacy(*args, **kwargs)


probability_flow_ode.plan = _plan
probability_flow_ode.core = _probability_flow_ode
