"""EDM's Euler and Heun samplers (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Algorithms 1 and 2) over the denoiser contract.

EDM writes the probability-flow ODE in the noise level σ of ``x = x₀ + σ ε`` (eq. 1 with s(t) = 1):
``dx/dσ = (x − D(x; σ))/σ``. Any process ``x_t = α x₀ + σ ε`` is that one after the scaling
``x̃ = x/α``, ``σ̃ = σ/α`` (EDM §2 and App. C, "scaling" s(t) = α): the solvers run on ``x̃`` and read
``D(x̃; σ̃) = x̂₀(α x̃, t(σ̃))`` from the denoiser, with ``t(σ̃)`` the process time of that level
(:meth:`~diffzoo.schedules.process.GaussianProcess.t_of_lambda`, λ = −log σ̃). The levels are
``sampler.grid`` (:mod:`~diffzoo.samplers.grids`; by default ``optimized`` for Euler and ``auto`` for
Heun — EDM eq. 5's ρ = 7 grid on EDM / VE processes, ``trailing`` on DDPM / VP ones) followed by
σ̃ = 0; the last step is a plain Euler step to σ̃ = 0, which returns ``D`` (Algorithm 1, line 6: no
correction at σ_{i+1} = 0).

Algorithm 2's "churn" (``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``) first raises the level to
``σ̂ = σ̃(1 + γ)``, ``γ = min(S_churn/N, √2 − 1)`` on ``[S_tmin, S_tmax]``, adding fresh noise of std
``S_noise √(σ̂² − σ̃²)``; ``s_churn = 0`` is the deterministic Algorithm 1. σ̂ is capped at the
process's top level (a DDPM / VP model is not defined above it).

NFE: Euler spends one evaluation per level (K = steps levels); Heun two per step but one on the last,
so K = ⌈(steps + 1)/2⌉ levels and ``2K − 1`` evaluations (one fewer than an even budget).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..denoisers import Denoiser
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like
from .grids import auto_grid, solver_grid
from .plan import Counter, SamplingPlan
from .solver_api import budget_of, check_denoiser, levels_of, solver_function, time_of_lambda

__all__ = ["edm_euler", "edm_heun"]


# Heun's grid where none is named: EDM's own on variance-exploding processes (EDM, VE), "trailing" on
# the DDPM table of the benchmark, the only grid on which Heun is stable at NFE 5 (conf/sampler/edm_heun.yaml).
HEUN_VP_GRID = "trailing"


def _levels(process, steps: int | None, heun: bool, grid: str, rho: float) -> list[float]:
    n = budget_of(process, steps)
    if grid == "auto":
        grid = auto_grid(process, HEUN_VP_GRID if heun else "optimized")
    return solver_grid(process, (n + 1) // 2 if heun else n, grid, rho)


def _plan_euler(process, steps: int | None = None, grid: str = "optimized", rho: float = 7.0, **_) -> SamplingPlan:
    times = _levels(process, steps, False, grid, rho)
    return SamplingPlan(sorted(times), len(times))


def _plan_heun(process, steps: int | None = None, grid: str = "auto", rho: float = 7.0, **_) -> SamplingPlan:
    times = _levels(process, steps, True, grid, rho)
    return SamplingPlan(sorted(set(times)), 2 * len(times) - 1)


def _check_churn(s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> None:
    if s_churn < 0 or s_noise < 0 or s_tmin < 0 or s_tmax < s_tmin:
        raise ValueError(f"sampler.s_churn / s_noise must be ≥ 0 and 0 ≤ s_tmin ≤ s_tmax (EDM Algorithm 2); got "
                         f"s_churn={s_churn}, s_tmin={s_tmin}, s_tmax={s_tmax}, s_noise={s_noise}")


@torch.no_grad()
def _edm(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None, *, heun: bool, grid: str, rho: float,
         s_churn: float, s_tmin: float, s_tmax: float, s_noise: float, generator: GeneratorLike,
         callback: Callable[[dict], None] | None, progress: bool) -> torch.Tensor:
    check_denoiser(denoiser, "edm_heun" if heun else "edm_euler")
    _check_churn(s_churn, s_tmin, s_tmax, s_noise)
    process = denoiser.process
    times = _levels(process, steps, heun, grid, rho)
    sig = [lv.sigma / lv.alpha for lv in levels_of(process, times)] + [0.0]  # σ̃ = σ/α (EDM App. C)
    top = sig[0]
    N = len(times)
    count = Counter(callback)

    def predict(x_tilde: torch.Tensor, t: float, a: float):  # D(x̃; σ̃) = x̂₀(α x̃, t) (EDM App. C scaling)
        return denoiser.predict(a * x_tilde, t)

    alphas = [lv.alpha for lv in levels_of(process, times)] + [1.0]
    x = x_T / alphas[0]  # x̃_0 = x_T / α(t_0)
    for i in track(range(N), total=N, description="EDM Heun" if heun else "EDM Euler", enabled=progress):
        t, s_cur, s_next = times[i], sig[i], sig[i + 1]
        # Algorithm 2, lines 4–6: γ_i, σ̂ = σ_i + γ_i σ_i, x̂ = x + √(σ̂² − σ_i²) ε, ε ~ N(0, S_noise² I)
        gamma = min(s_churn / N, math.sqrt(2) - 1) if s_tmin <= s_cur <= s_tmax else 0.0
        s_hat = min(s_cur * (1 + gamma), top)
        a = alphas[i]
        if s_hat > s_cur:
            t = time_of_lambda(process, -math.log(s_hat))
            a = process.alpha_sigma(t)[0]
            x = x + math.sqrt(s_hat**2 - s_cur**2) * s_noise * randn_like(x, generator)
        p = predict(x, t, a)
        d0 = p.x0
        d = p.eps  # line 7: d_i = (x̂ − D(x̂; σ̂))/σ̂, which is ε̂ since x̃ = x̂₀ + σ̃ ε̂
        x_next = x + (s_next - s_hat) * d  # line 8: Euler step
        evaluations = 1
        if heun and s_next > 0:  # lines 9–11: second-order correction unless σ_{i+1} = 0
            d_next = predict(x_next, times[i + 1], alphas[i + 1]).eps  # line 10: (x_{i+1} − D)/σ_{i+1} = ε̂
            x_next = x + (s_next - s_hat) * (0.5 * d + 0.5 * d_next)
            evaluations = 2
        x = x_next
        count({"i": i, "t": t, "x": alphas[i + 1] * x if callback is not None else x, "x0": d0}, evaluations)
    return x


def _euler(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, grid: str = "optimized", rho: float = 7.0,
           s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
           generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
           progress: bool = False) -> torch.Tensor:
    """EDM's Euler sampler (Karras et al. 2022, Algorithm 2 without its correction; Algorithm 1's
    Euler step): ``x_T`` ``[B, …]`` → ``x_0`` ``[B, …]``, ``steps`` evaluations (module docstring).

    Args:
        grid: ``sampler.grid`` (:data:`~diffzoo.samplers.grids.GRIDS`); ``rho``: ρ of the karras grid.
        s_churn, s_tmin, s_tmax, s_noise: EDM Algorithm 2's stochasticity (0: deterministic).
    """
    return _edm(denoiser, x_T, steps, heun=False, grid=grid, rho=rho, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax,
                s_noise=s_noise, generator=generator, callback=callback, progress=progress)


def _heun(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, grid: str = "auto", rho: float = 7.0,
          s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0,
          generator: GeneratorLike = None, callback: Callable[[dict], None] | None = None,
          progress: bool = False) -> torch.Tensor:
    """EDM's Heun sampler (Karras et al. 2022, Algorithm 1; with ``s_churn > 0`` the stochastic
    Algorithm 2): ``x_T`` ``[B, …]`` → ``x_0`` ``[B, …]``, ≤ ``steps`` evaluations (module docstring)."""
    return _edm(denoiser, x_T, steps, heun=True, grid=grid, rho=rho, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax,
                s_noise=s_noise, generator=generator, callback=callback, progress=progress)


edm_euler = solver_function(_euler, _plan_euler, "edm_euler")
edm_heun = solver_function(_heun, _plan_heun, "edm_heun")
