"""Multistep DPM-Solver++ (Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"): 2M, 3M and the SDE variant SDE-DPM-Solver++(2M), in the data prediction x̂₀.

In ``λ = log(α/σ)`` the probability-flow ODE solution from s to t is (DPM-Solver++ eq. 9)
``x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^{λ} x̂₀(x_λ, λ) dλ``. A multistep solver expands x̂₀ around
λ_s with divided differences of the x̂₀ it evaluated at the previous grid times (no extra evaluations),
``h = λ_t − λ_s``, ``r = h_{prev}/h``:

* first order (every solver's first step): ``x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) x̂₀_s``;
* 2M (Algorithm 2): x̂₀_s replaced by ``D = (1 + 1/2r) x̂₀_s − (1/2r) x̂₀_{prev}``;
* 3M: x̂₀ expanded to second order, integrated exactly: ``x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D₀
  + α_t ((e^{−h} − 1)/h + 1) D₁ − α_t (((e^{−h} − 1)/h + 1)/h − ½) D₂`` with the divided differences
  ``D₁ = D₁₀ + r₀/(r₀ + r₁)(D₁₀ − D₁₁)`` (= h x̂₀' + O(h³)), ``D₂ = 2(D₁₀ − D₁₁)/(r₀ + r₁)``
  (= h² x̂₀'' + O(h³)), ``D₁ⱼ = (x̂₀ⱼ − x̂₀ⱼ₊₁)/rⱼ``: the exact integral of the quadratic through the last
  three x̂₀, local error O(h⁴) (``tests/unit/test_solvers.py``). The reference code's third-order update
  (and diffusers') has ``D₂`` without the factor 2, i.e. half the second derivative: its local error
  is O(h³) — one order lower; diffzoo keeps the factor the Taylor expansion asks for;
* SDE-DPM-Solver++(2M), the SDE form of the same integral (the reference code's ``sde-dpmsolver++``,
  midpoint form): ``x_t = (σ_t/σ_s) e^{−h} x_s + α_t(1 − e^{−2h})(D₀ + ½ D₁) + σ_t √(1 − e^{−2h}) z``;
  its first order is DDPM's posterior step (DDIM with η = 1).

The first steps use lower orders until enough history exists (the reference code's warm-up); the
final step from the last grid time to clean data is first order — it is x̂₀ there (as diffusers'
``final_sigmas_type="zero"`` with ``lower_order_final``, and DDIM's last step). ``steps`` = NFE = grid points.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..denoisers import Denoiser
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like
from .grids import solver_grid
from .plan import Counter, SamplingPlan
from .solver_api import Level, budget_of, check_denoiser, levels_of, solver_function

__all__ = ["dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde"]


def _grid(process, steps, grid, rho) -> list[float]:
    return solver_grid(process, budget_of(process, steps), grid, rho)


def _plan_factory(default_grid: str):
    def plan(process, steps=None, grid=default_grid, rho=7.0, **_) -> SamplingPlan:
        times = _grid(process, steps, grid, rho)
        return SamplingPlan(sorted(times), len(times))
    return plan


def _ode_step(x: torch.Tensor, hist: list, t: Level, k: int) -> torch.Tensor:
    """One multistep DPM-Solver++ step of order k to t; ``hist`` = [(level, x̂₀), …], newest last."""
    s, m0 = hist[-1]
    h = t.lam - s.lam
    em1 = math.expm1(-h)  # e^{−h} − 1
    base = (t.sigma / s.sigma) * x
    if k == 1:
        return base - t.alpha * em1 * m0
    s1, m1 = hist[-2]
    r0 = (s.lam - s1.lam) / h
    if k == 2:  # Algorithm 2: D = (1 + 1/2r) m0 − (1/2r) m1
        return base - t.alpha * em1 * ((1 + 1 / (2 * r0)) * m0 - (1 / (2 * r0)) * m1)
    s2, m2 = hist[-3]
    r1 = (s1.lam - s2.lam) / h
    d10, d11 = (m0 - m1) / r0, (m1 - m2) / r1
    d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11)
    d2 = 2 * (d10 - d11) / (r0 + r1)  # h² x̂₀'' (the reference code omits the 2: module docstring)
    phi_1 = em1 / h + 1  # ((e^{−h} − 1)/h + 1)
    return base - t.alpha * em1 * m0 + t.alpha * phi_1 * d1 - t.alpha * (phi_1 / h - 0.5) * d2


def _sde_step(x: torch.Tensor, hist: list, t: Level, k: int, generator) -> torch.Tensor:
    """One SDE-DPM-Solver++ step of order k ≤ 2 (module docstring)."""
    s, m0 = hist[-1]
    h = t.lam - s.lam
    keep = -math.expm1(-2 * h)  # 1 − e^{−2h}
    d = m0
    if k >= 2:
        s1, m1 = hist[-2]
        d = m0 + 0.5 * (m0 - m1) / ((s.lam - s1.lam) / h)
    return (t.sigma / s.sigma) * math.exp(-h) * x + t.alpha * keep * d + t.sigma * math.sqrt(keep) * randn_like(x, generator)


@torch.no_grad()
def _multistep(denoiser: Denoiser, x_T: torch.Tensor, steps, *, order: int, sde: bool, grid: str, rho: float,
               generator, callback, progress: bool, name: str) -> torch.Tensor:
    check_denoiser(denoiser, name)
    process = denoiser.process
    levels = levels_of(process, _grid(process, steps, grid, rho))
    count = Counter(callback)
    hist: list = []
    x = x_T
    for i in track(range(len(levels)), total=len(levels), description=name, enabled=progress):
        s = levels[i]
        x0 = denoiser.predict(x, s.t).x0
        hist = (hist + [(s, x0)])[-order:]
        if i == len(levels) - 1:  # the final step to clean data: x̂₀
            count({"i": i, "t": s.t, "x": x0, "x0": x0})
            return x0
        k = min(order, i + 1)  # warm-up: lower orders until the history is long enough
        t = levels[i + 1]
        x = _sde_step(x, hist, t, k, generator) if sde else _ode_step(x, hist, t, k)
        count({"i": i, "t": s.t, "x": x, "x0": x0})
    raise AssertionError("unreachable")  # pragma: no cover


def _dpmpp_2m(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, grid: str = "optimized",
              rho: float = 7.0, generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
              progress: bool = False) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2): ``x_T`` ``[B, …]`` → ``x_0`` ``[B, …]`` in ``steps``
    evaluations over ``sampler.grid`` (module docstring)."""
    return _multistep(denoiser, x_T, steps, order=2, sde=False, grid=grid, rho=rho, generator=generator,
                      callback=callback, progress=progress, name="dpmpp_2m")


def _dpmpp_3m(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, grid: str = "optimized",
              rho: float = 7.0, generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
              progress: bool = False) -> torch.Tensor:
    """DPM-Solver++(3M), the third-order multistep update (module docstring): ``x_T`` → ``x_0`` ``[B, …]``."""
    return _multistep(denoiser, x_T, steps, order=3, sde=False, grid=grid, rho=rho, generator=generator,
                      callback=callback, progress=progress, name="dpmpp_3m")


def _dpmpp_2m_sde(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, grid: str = "optimized",
                  rho: float = 7.0, generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
                  progress: bool = False) -> torch.Tensor:
    """SDE-DPM-Solver++(2M) (module docstring): ``x_T`` → ``x_0`` ``[B, …]``; noise drawn with ``generator``
    (one per sample: sample i depends on its own generator only)."""
    return _multistep(denoiser, x_T, steps, order=2, sde=True, grid=grid, rho=rho, generator=generator,
                      callback=callback, progress=progress, name="dpmpp_2m_sde")


dpmpp_2m = solver_function(_dpmpp_2m, _plan_factory("logsnr"), "dpmpp_2m")
dpmpp_3m = solver_function(_dpmpp_3m, _plan_factory("logsnr"), "dpmpp_3m")
dpmpp_2m_sde = solver_function(_dpmpp_2m_sde, _plan_factory("logsnr"), "dpmpp_2m_sde")
