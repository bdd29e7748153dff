"""Singlestep exponential integrators: DPM-Solver (Lu et al. 2022a, "DPM-Solver: A Fast ODE Solver for
Diffusion Probabilistic Model Sampling in Around 10 Steps"), orders 1–3 in the noise prediction ε̂,
and DPM-Solver++(2S) (Lu et al. 2022b, Algorithm 1) in the data prediction x̂₀.

In ``λ = log(α/σ)`` the probability-flow ODE has the exact solution (DPM-Solver eq. 3.4)
``x_t = (α_t/α_s) x_s − α_t ∫_{λ_s}^{λ_t} e^{−λ} ε̂(x_λ, λ) dλ``; DPM-Solver-k expands ε̂ to order k−1
around λ_s and evaluates it at intermediate levels ``λ_s + r h`` (``h = λ_t − λ_s``):

* DPM-Solver-1: ``x_t = (α_t/α_s) x_s − σ_t (e^h − 1) ε̂_s`` — DDIM (η = 0) in λ (DPM-Solver §4.1);
* DPM-Solver-2 (Algorithm 1, r₁ = ½) and DPM-Solver-3 (Algorithm 2, r₁ = ⅓, r₂ = ⅔).

DPM-Solver++ writes the same integral with x̂₀: ``x_t = (σ_t/σ_s) x_s + σ_t ∫ e^{λ} x̂₀ dλ``; its
first-order step is ``x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) x̂₀_s`` and 2S (Algorithm 1, r = ½) evaluates
x̂₀ once more at the midpoint.

**Budget.** ``steps`` = NFE. One evaluation goes to the final step (x̂₀ at the last grid time, as DDIM),
the other ``B = steps − 1`` to the singlestep orders over ``sampler.grid``'s macro steps. With
``fast=True`` the orders are DPM-Solver-fast's (§3.4, for ``order = 3``): ``K = ⌊B/3⌋ + 1`` steps with
orders ``3,…,3,2,1`` (B ≡ 0 mod 3), ``3,…,3,1`` (≡ 1) or ``3,…,3,2`` (≡ 2); otherwise (and for orders
1–2) steps of the given order and one lower-order step for the remainder.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..denoisers import Denoiser
from ..utils.progress import track
from ..utils.random import GeneratorLike
from .grids import solver_grid
from .plan import Counter, SamplingPlan
from .solver_api import Level, budget_of, check_denoiser, levels_of, memo, solver_function, time_of_lambda

__all__ = ["dpm_solver", "dpmpp_2s", "singlestep_orders", "DPM_SOLVER_ORDERS"]

DPM_SOLVER_ORDERS = (1, 2, 3)
# intermediate levels of each order as fractions r of the step in λ (DPM-Solver Algorithms 1 and 2)
_RATIOS = {1: (), 2: (0.5,), 3: (1 / 3, 2 / 3)}


def singlestep_orders(evaluations: int, order: int, fast: bool = True) -> list[int]:
    """The order of each macro step when ``evaluations`` network calls go to singlestep steps of at most
    ``order`` (module docstring; DPM-Solver §3.4 for ``fast`` and order 3). Sums to ``evaluations``."""
    if order not in DPM_SOLVER_ORDERS:
        raise ValueError(f"sampler.order must be one of {list(DPM_SOLVER_ORDERS)}; got {order!r}")
    B = evaluations
    if fast and order == 3 and B >= 3:
        K = B // 3 + 1
        tail = {0: [2, 1], 1: [1], 2: [2]}[B % 3]
        return [3] * (K - len(tail)) + tail
    return [order] * (B // order) + ([B % order] if B % order else [])


def _schedule(process, steps, order, fast, grid, rho):
    """``(orders, macro levels, intermediate levels of each step)`` for the budget (module docstring), cached."""
    n = budget_of(process, steps)

    def compute():
        orders = singlestep_orders(n - 1, order, fast)
        macro = levels_of(process, solver_grid(process, len(orders) + 1, grid, rho))
        inner = tuple(levels_of(process, _inner_times(process, macro[i], macro[i + 1], k)) for i, k in enumerate(orders))
        return orders, macro, inner

    return memo(process, ("singlestep", n, order, bool(fast), grid, float(rho)), compute)


def _inner_times(process, s: Level, t: Level, k: int) -> list[float]:
    """Times of the intermediate levels ``λ_s + r h`` of an order-k step (DPM-Solver Algorithms 1–2)."""
    h = t.lam - s.lam
    return [time_of_lambda(process, s.lam + r * h) for r in _RATIOS[k]]


def _plan(process, steps=None, order=3, fast=True, grid="logsnr", rho=7.0, **_) -> SamplingPlan:
    orders, macro, inner = _schedule(process, steps, order, fast, grid, rho)
    times = [lv.t for lv in macro] + [lv.t for levels in inner for lv in levels]
    return SamplingPlan(sorted(times), sum(orders) + 1)


def _ratio(a: Level, b: Level) -> float:
    return a.alpha / b.alpha


def _eps_step(x: torch.Tensor, eps: torch.Tensor, s: Level, t: Level) -> torch.Tensor:
    """DPM-Solver-1 from s to t: ``(α_t/α_s) x − σ_t (e^h − 1) ε̂`` (DPM-Solver §4.1)."""
    return _ratio(t, s) * x - t.sigma * math.expm1(t.lam - s.lam) * eps


def _dpm_solver_step(eps_at, x: torch.Tensor, eps_s: torch.Tensor, s: Level, t: Level, inner) -> torch.Tensor:
    """One DPM-Solver-k step from s to t over the intermediate levels ``inner`` (k − 1 of them, at
    ``λ_s + r h``); ``eps_at(x, t)`` evaluates the model."""
    h = t.lam - s.lam
    k = len(inner) + 1
    if k == 1:
        return _eps_step(x, eps_s, s, t)
    if k == 2:  # Algorithm 1 (DPM-Solver-2), r₁ = ½
        r1 = _RATIOS[2][0]
        s1 = inner[0]
        u = _eps_step(x, eps_s, s, s1)
        eps_1 = eps_at(u, s1.t)
        return _eps_step(x, eps_s, s, t) - (t.sigma / (2 * r1)) * math.expm1(h) * (eps_1 - eps_s)
    # Algorithm 2 (DPM-Solver-3), r₁ = ⅓, r₂ = ⅔
    r1, r2 = _RATIOS[3]
    s1, s2 = inner
    u1 = _eps_step(x, eps_s, s, s1)
    d1 = eps_at(u1, s1.t) - eps_s
    phi_2 = math.expm1(r2 * h) / (r2 * h) - 1  # (e^{r₂h} − 1)/(r₂h) − 1
    u2 = _eps_step(x, eps_s, s, s2) - (s2.sigma * r2 / r1) * phi_2 * d1
    d2 = eps_at(u2, s2.t) - eps_s
    return _eps_step(x, eps_s, s, t) - (t.sigma / r2) * (math.expm1(h) / h - 1) * d2


def _x0_step(x: torch.Tensor, x0: torch.Tensor, s: Level, t: Level) -> torch.Tensor:
    """DPM-Solver++ first order from s to t: ``(σ_t/σ_s) x − α_t (e^{−h} − 1) x̂₀`` (Lu et al. 2022b, §4)."""
    return (t.sigma / s.sigma) * x - t.alpha * math.expm1(-(t.lam - s.lam)) * x0


def _dpmpp_2s_step(x0_at, x: torch.Tensor, x0_s: torch.Tensor, s: Level, t: Level, inner) -> torch.Tensor:
    """One DPM-Solver++(2S) step (Lu et al. 2022b, Algorithm 1, r = ½, ``inner`` = the midpoint level), or
    first order when ``inner`` is empty."""
    if not inner:
        return _x0_step(x, x0_s, s, t)
    r = 0.5
    mid = inner[0]
    u = _x0_step(x, x0_s, s, mid)
    d = (1 - 1 / (2 * r)) * x0_s + (1 / (2 * r)) * x0_at(u, mid.t)  # D_i = (1 − 1/2r) x̂₀(x, s) + 1/2r x̂₀(u, mid)
    return _x0_step(x, d, s, t)


@torch.no_grad()
def _singlestep(denoiser: Denoiser, x_T: torch.Tensor, steps, *, data_prediction: bool, order: int, fast: bool,
                grid: str, rho: float, callback, progress: bool, name: str) -> torch.Tensor:
    check_denoiser(denoiser, name)
    process = denoiser.process
    orders, levels, inner = _schedule(process, steps, order, fast, grid, rho)
    count = Counter(callback)

    def view(x, t):  # one evaluation, in the solver's own prediction
        p = denoiser.predict(x, t)
        return p.x0 if data_prediction else p.eps

    x = x_T
    for i in track(range(len(orders)), total=len(orders), description=name, enabled=progress):
        s, t, k = levels[i], levels[i + 1], orders[i]
        p = denoiser.predict(x, s.t)
        if data_prediction:
            x = _dpmpp_2s_step(view, x, p.x0, s, t, inner[i])
        else:
            x = _dpm_solver_step(view, x, p.eps, s, t, inner[i])
        count({"i": i, "t": s.t, "x": x, "x0": p.x0}, k)
    p = denoiser.predict(x, levels[-1].t)  # the final step to clean data: x̂₀ (as DDIM's last step)
    count({"i": len(orders), "t": levels[-1].t, "x": p.x0, "x0": p.x0})
    return p.x0


def _dpm_solver(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, order: int = 3, fast: bool = True,
                grid: str = "logsnr", rho: float = 7.0, generator: GeneratorLike = None,
                callback: Callable[[dict], None] | None = None, progress: bool = False) -> torch.Tensor:
    """DPM-Solver, singlestep, noise prediction (Lu et al. 2022a; module docstring): ``x_T`` ``[B, …]`` →
    ``x_0`` ``[B, …]`` in ``steps`` evaluations.

    Args:
        order: 1, 2 or 3 (1 is DDIM with η = 0).
        fast: DPM-Solver-fast's order schedule (§3.4) for order 3.
        grid: ``sampler.grid`` (``logsnr``: the paper's uniform λ); ``rho``: ρ of the karras grid.
    """
    return _singlestep(denoiser, x_T, steps, data_prediction=False, order=order, fast=fast, grid=grid, rho=rho,
                       callback=callback, progress=progress, name="dpm_solver")


def _dpmpp_2s(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, grid: str = "optimized",
              rho: float = 7.0, generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
              progress: bool = False) -> torch.Tensor:
    """DPM-Solver++(2S), singlestep, data prediction (Lu et al. 2022b, Algorithm 1; module docstring):
    ``x_T`` ``[B, …]`` → ``x_0`` ``[B, …]`` in ``steps`` evaluations (an odd remainder: one first-order step)."""
    return _singlestep(denoiser, x_T, steps, data_prediction=True, order=2, fast=False, grid=grid, rho=rho,
                       callback=callback, progress=progress, name="dpmpp_2s")


def _plan_2s(process, steps=None, grid="optimized", rho=7.0, **_) -> SamplingPlan:
    return _plan(process, steps, order=2, fast=False, grid=grid, rho=rho)


dpm_solver = solver_function(_dpm_solver, _plan, "dpm_solver")
dpmpp_2s = solver_function(_dpmpp_2s, _plan_2s, "dpmpp_2s")
