"""Time grids of the few-step solvers: where a solver evaluates the model, one option (``sampler.grid``)
shared by every solver of :mod:`diffzoo.samplers.edm`, :mod:`~diffzoo.samplers.dpm_solver`,
:mod:`~diffzoo.samplers.dpm_solver_pp` and :mod:`~diffzoo.samplers.unipc`.

A grid of K points is K **decreasing** process times ``t_0 = t_max > … > t_{K−1}`` (the last
evaluation time); every solver then takes one final first-order step from ``t_{K−1}`` to clean data
(σ = 0), which is x̂₀ at ``t_{K−1}`` — as DDIM does after its smallest grid time. The grids are
written in EDM's noise level ``σ̃ = σ/α`` (Karras et al. 2022, §2 and App. C: ``x/α = x₀ + σ̃ ε``),
equivalently in ``λ = log(α/σ) = −log σ̃`` (DPM-Solver's half log-SNR), and mapped to process time
through :meth:`~diffzoo.schedules.process.GaussianProcess.t_of_lambda`, so one definition serves DDPM
tables (real-valued index), the VP / sub-VP / VE SDEs and a σ ladder:

* ``linspace`` / ``leading`` / ``trailing``: uniform in t, named as diffusers' ``timestep_spacing``
  (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2): both ends;
  ``k·T/K`` (top not reached); ``T − k·T/K − 1`` (top first). A DDPM table counts its T indices
  (real-valued, not rounded); an SDE its interval ``[sampling_eps, 1]``.
* ``quadratic``: quadratic in t, dense at small t (the DDIM code's ``skip_type="quad"``).
* ``logsnr``: uniform in λ (DPM-Solver, Lu et al. 2022a, §3.3 and App. D).
* ``karras``: ``σ̃_i = (σ̃_max^{1/ρ} + i/(K−1)(σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ``, ρ = 7 (EDM eq. 5).
* ``optimized``: the K times that minimise the global error of the first-order solver on a calibration
  set (:func:`optimized_sigmas`), after "Align Your Steps" (Sabour, Fidler & Kreis 2024).

A σ ladder (NCSN) has a network defined only at its levels: it takes ``linspace`` / ``logsnr`` (its
levels thinned evenly in index, i.e. in log σ) and refuses the others with a ``ValueError`` naming
``sampler.grid``.
"""

from __future__ import annotations

import functools
import math

import torch

from ..schedules import DiscreteSchedule
from ..schedules.ladder import SigmaLadder
from .solver_api import SIGMA_TILDE_MAX, SIGMA_TILDE_MIN, bottom_time, memo, top_time

__all__ = ["GRIDS", "solver_grid", "auto_grid", "sigma_tilde", "top_time", "bottom_time", "SIGMA_TILDE_MAX", "SIGMA_TILDE_MIN", "karras_sigmas", "optimized_sigmas", "grid_objective",
           "CALIBRATION_SCALES"]

GRIDS = ("linspace", "leading", "trailing", "quadratic", "logsnr", "karras", "optimized")

# The data scales s of the calibration set of the optimised grid: 1-D Gaussians N(0, s²) from a cluster
# width (0.02) to the spread of image data in [−1, 1] (≈ 1), log-spaced. Values, not logic: a named choice.
CALIBRATION_SCALES = tuple(float(v) for v in torch.logspace(math.log10(0.02), math.log10(2.0), 9, dtype=torch.float64))


def sigma_tilde(process, t: float) -> float:
    """EDM's noise level ``σ̃(t) = σ(t)/α(t)`` (Karras et al. 2022, App. C "scaling") of process time ``t``."""
    a, s = process.alpha_sigma(float(t))
    return s / a


def _t_of_sigma_tilde(process, sig: torch.Tensor) -> list[float]:
    """Process times with ``σ̃(t) = sig`` (``λ = −log σ̃``), float64 ``[K]`` → list."""
    return process.t_of_lambda(-torch.log(sig)).tolist()


def karras_sigmas(sigma_max: float, sigma_min: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5: ``σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``, i = 0 … N−1 (the
    paper's ``σ_N = 0`` is the solvers' final step) → float64 ``[N]``, decreasing."""
    if steps == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    i = torch.arange(steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + i / (steps - 1) * (lo - hi)) ** rho


# ---------------------------------------------------------------------- the optimised grid
def _first_order_gain(sig: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Gain of the first-order solver on ``x₀ ~ N(μ, s²)`` over the grid ``sig`` ``[K]`` (then σ̃ = 0).

    For Gaussian data ``D(x̃, σ̃) = μ + s²/(s² + σ̃²)(x̃ − μ)``, so one DDIM / Euler step σ̃ → σ̃'
    (``x̃' = D + (σ̃'/σ̃)(x̃ − D)``, DDIM eq. 12 in EDM's coordinates) multiplies ``x̃ − μ`` by
    ``(s² + σ̃ σ̃')/(s² + σ̃²)``; the last step (σ̃' = 0) by ``s²/(s² + σ̃²)`` → ``[S]``."""
    s2 = scales[:, None] ** 2
    nxt = torch.cat([sig[1:], sig.new_zeros(1)])
    return ((s2 + sig * nxt) / (s2 + sig**2)).prod(dim=1)


def grid_objective(sig: torch.Tensor, scales=CALIBRATION_SCALES) -> torch.Tensor:
    """The optimised grid's objective: mean over the calibration scales ``s`` of the squared relative
    error of the first-order solver's output, ``(G_solver(s)/G_exact(s) − 1)²`` with the exact ODE gain
    ``G_exact = s/√(s² + σ̃_0²)`` (the probability-flow ODE of Gaussian data moves ``x̃ − μ`` in
    proportion to ``√(s² + σ̃²)``, :func:`_first_order_gain`). ``sig``: decreasing σ̃ ``[K]`` → scalar."""
    scales = torch.as_tensor(scales, dtype=sig.dtype)
    exact = scales / torch.sqrt(scales**2 + sig[0] ** 2)
    return ((_first_order_gain(sig, scales) / exact - 1) ** 2).mean()


@functools.lru_cache(maxsize=256)
def optimized_sigmas(sigma_max: float, sigma_min: float, steps: int, iterations: int = 200) -> tuple[float, ...]:
    """K noise levels ``σ̃_max = σ̃_0 > … > σ̃_{K−1} ≥ σ̃_min`` optimised for K steps.

    The method follows "Align Your Steps" (Sabour, Fidler & Kreis 2024): keep the solver and the step
    count fixed and choose the step times that minimise an error measure of the sampled distribution on
    a calibration set. Here the calibration set is a family of 1-D Gaussian data distributions
    ``N(μ, s²)`` with ``s`` in :data:`CALIBRATION_SCALES`; for those the probability-flow ODE and the
    first-order solver (DDIM = DPM-Solver-1 = EDM Euler) are linear, so the relative error of the output
    is exact in closed form (:func:`grid_objective`), and no network or data is needed. The free levels
    are ``log σ̃_i = log σ̃_max − (log σ̃_max − log σ̃_min)·cumsum(softmax(w))_i`` (decreasing, above
    σ̃_min), started at the uniform-λ grid and minimised with L-BFGS. Gaussian data only see the error
    of the linear part of the ODE; the grid spends more steps where a cluster of width ``s`` is formed
    (σ̃ ≈ s) than uniform λ does. Returns the K levels (cached per arguments).
    """
    if steps == 1:
        return (float(sigma_max),)
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    # K increments of log σ̃; the last one is the unused gap down to σ̃_min (starts tiny: ≈ uniform λ).
    w = torch.zeros(steps, dtype=torch.float64)
    w[-1] = -12.0
    w.requires_grad_(True)

    def levels(w):
        frac = torch.cumsum(torch.softmax(w, 0), 0)[:-1]
        return torch.exp(torch.cat([w.new_tensor([hi]), hi - (hi - lo) * frac]))

    opt = torch.optim.LBFGS([w], lr=0.5, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = grid_objective(levels(w))
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return tuple(levels(w).tolist())


# ---------------------------------------------------------------------- the grids on a process
def _uniform_in_t(process, steps: int, grid: str) -> list[float]:
    lo, hi = bottom_time(process), top_time(process)
    K = steps
    if isinstance(process, DiscreteSchedule):  # T indices: diffusers' `timestep_spacing` over range(T)
        span, shift = hi - lo + 1.0, 1.0
    else:
        span, shift = hi - lo, 0.0
    k = torch.arange(K, dtype=torch.float64)
    if grid == "linspace":
        u = hi - (hi - lo) * (k / max(K - 1, 1))
    elif grid == "leading":  # diffusers: arange(0, K) · (T / K), reversed
        u = lo + (K - 1 - k) * span / K
    elif grid == "trailing":  # diffusers: round(arange(T, 0, −T/K)) − 1
        u = lo + span - k * span / K - shift
    else:  # quadratic: dense near t_end
        u = lo + (hi - lo) * ((K - 1 - k) / max(K - 1, 1)) ** 2
    return u.clamp(lo, hi).tolist()


def _ladder_grid(process, steps: int, grid: str) -> list[float]:
    if grid not in ("linspace", "logsnr"):
        raise ValueError(f"sampler.grid={grid} needs a network defined between noise levels; a σ ladder (NCSN) is "
                         "evaluated at its own levels only: use sampler.grid=logsnr (its levels thinned evenly in log σ)")
    return list(reversed(process.time_grid(steps, "uniform")))


def solver_grid(process, steps: int, grid: str = "logsnr", rho: float = 7.0) -> list[float]:
    """``steps`` decreasing process times ``t_max = t_0 > … > t_{K−1}`` at which a solver evaluates the
    model (module docstring; :func:`_solver_grid`), cached per process and arguments."""
    if grid not in GRIDS:
        raise ValueError(f"sampler.grid must be one of {list(GRIDS)}; got {grid!r}")
    return list(memo(process, ("grid", steps, grid, float(rho)), lambda: tuple(_solver_grid(process, steps, grid, rho))))


def auto_grid(process, vp_default: str) -> str:
    """``sampler.grid=auto``: EDM's ρ-spaced grid (eq. 5) where the process explodes in variance (α ≡ 1:
    EDM's process, the VE SDE — the setting EDM's Table 1 and Algorithm 1 use), a σ ladder's own levels
    (``logsnr``), and ``vp_default`` for a process whose signal decays (DDPM tables, VP / sub-VP)."""
    if isinstance(process, SigmaLadder):
        return "logsnr"
    a_hi, _ = process.alpha_sigma(top_time(process))
    a_lo, _ = process.alpha_sigma(bottom_time(process))
    return "karras" if a_hi == 1.0 and a_lo == 1.0 else vp_default


def _solver_grid(process, steps: int, grid: str = "logsnr", rho: float = 7.0) -> list[float]:
    """``steps`` decreasing process times ``t_max = t_0 > … > t_{K−1}`` at which a solver evaluates the
    model (module docstring); the solver's last step goes from ``t_{K−1}`` to clean data. ``t_0`` is
    :func:`top_time` (``t_max`` unless the signal vanishes there).

    Args:
        process: any :class:`~diffzoo.schedules.process.GaussianProcess`.
        steps: K ≥ 1.
        grid: one of :data:`GRIDS`.
        rho: ρ of the ``karras`` grid (EDM eq. 5; 7 in the paper).
    Raises ``ValueError`` naming ``sampler.grid`` / ``sampler.steps`` for a value that does not fit.
    """
    if grid not in GRIDS:
        raise ValueError(f"sampler.grid must be one of {list(GRIDS)}; got {grid!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"sampler.steps={steps!r} must be a positive integer")
    if isinstance(process, SigmaLadder):  # the one process whose network lives on a finite set of levels
        return _ladder_grid(process, steps, grid)
    if grid in ("linspace", "leading", "trailing", "quadratic"):
        return _uniform_in_t(process, steps, grid)
    t_hi, t_lo = top_time(process), bottom_time(process)
    s_hi, s_lo = sigma_tilde(process, t_hi), sigma_tilde(process, t_lo)
    if grid == "logsnr":  # uniform in λ = −log σ̃ (DPM-Solver §3.3)
        sig = torch.exp(torch.linspace(math.log(s_hi), math.log(s_lo), steps, dtype=torch.float64))
    elif grid == "karras":
        sig = karras_sigmas(s_hi, s_lo, steps, rho)
    else:
        sig = torch.tensor(optimized_sigmas(s_hi, s_lo, steps), dtype=torch.float64)
    times = _t_of_sigma_tilde(process, sig)
    times[0] = t_hi  # the top exactly (bisection leaves ~1e-30)
    return [min(max(t, t_lo), t_hi) for t in times]
