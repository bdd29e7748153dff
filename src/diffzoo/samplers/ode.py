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

from ..schedules.sde import SDE
from ..utils.random import GeneratorLike
from .pc import CountingScore

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


@torch.no_grad()
def probability_flow_ode(
    score_fn: ScoreFn,
    sde: SDE,
    x_T: torch.Tensor,
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
        score_fn: ``score_fn(x, t) → ∇_x log p_t(x)``; ``t`` float ``[B]``.
        sde: the forward :class:`~diffzoo.schedules.sde.SDE`.
        x_T: ``[B, …]`` starting noise (``sde.prior_sampling``); all samples are solved as one
            system, as in the reference code, so the adaptive steps are shared by the batch.
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
    counted = CountingScore(score_fn)
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
