"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models"): the multistep predictor UniP-p and the corrector UniC-p in the data prediction x̂₀, with the
B(h) variants ``bh1`` (B(h) = h) and ``bh2`` (B(h) = e^h − 1) of the paper's §3.3 / Appendix.

One step from s to t (``h = λ_t − λ_s``, written with ``h̃ = −h`` for the data prediction) with
previous x̂₀ at ``λ_{s_j}``, ``r_j = (λ_{s_j} − λ_s)/h`` and ``D_j = (x̂₀_{s_j} − x̂₀_s)/r_j``:

    x_t = (σ_t/σ_s) x_s − α_t (e^{h̃} − 1) x̂₀_s − α_t B(h) Σ_j a_j D_j          (UniP, Algorithm 2)

and the corrector adds the model's x̂₀ at the *predicted* x_t as one more point (``r = 1``,
``D = x̂₀_t − x̂₀_s``) — one order more at no extra evaluation (UniC, Algorithm 1). The coefficients
solve ``R_p a = g_p/B(h)`` with ``R_p[i, j] = r_j^{i}`` and ``g_i = h̃ φ_{i+1}(h̃) · i!``,
``φ_1(h̃) = (e^{h̃} − 1)/h̃``, ``φ_{k+1} = (φ_k − 1/k!)/h̃`` (the paper's Theorem 3.1 / Appendix C);
UniP-2 uses ``a = ½`` and UniC-1 ``a = ½`` as the paper's code.

The model's x̂₀ is evaluated at the predicted point; the corrected point is where the next predictor
starts. The final step from the last grid time to clean data is first order — it is x̂₀ at the last
predicted point — so the last corrector would be discarded: UniPC's "no corrector at the last step"
(which here saves nothing and changes nothing). ``steps`` = NFE = grid points; lower orders warm up.
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
from .solver_api import Level, budget_of, check_denoiser, levels_of, solver_function

__all__ = ["unipc", "UNIPC_VARIANTS", "unipc_coefficients"]

UNIPC_VARIANTS = ("bh1", "bh2")


def unipc_coefficients(h: float, rks: list[float], variant: str, predictor: bool) -> tuple[float, list[float]]:
    """``(B(h), a)`` of a UniP (``predictor``; rks = previous points only) or UniC step (rks with 1 last).

    ``h`` = λ_t − λ_s > 0; ``rks`` the ``r_j``; returns floats (module docstring)."""
    hh = -h  # data prediction
    B = hh if variant == "bh1" else math.expm1(hh)
    order = len(rks) + (1 if predictor else 0)  # the order of accuracy's g_i, i = 1 … p
    g, phi, fact = [], math.expm1(hh) / hh - 1, 1.0  # phi = h̃ φ_2(h̃) = φ_1 − 1
    for i in range(1, order + 1):
        g.append(phi * fact / B)
        fact *= i + 1
        phi = phi / hh - 1 / fact  # h̃ φ_{i+2} = φ_{i+1} − 1/(i+1)!
    n = len(rks)
    if n == 0:
        return B, []
    if n == 1 and (predictor or rks == [1.0]):  # UniP-2 and UniC-1 use a = ½ (the paper's code)
        return B, [0.5]
    R = torch.tensor([[r**i for r in rks] for i in range(n)], dtype=torch.float64)
    return B, torch.linalg.solve(R, torch.tensor(g[:n], dtype=torch.float64)).tolist()


def _update(x: torch.Tensor, hist: list, t: Level, k: int, variant: str, x0_t: torch.Tensor | None) -> torch.Tensor:
    """UniP-k (``x0_t`` None) or UniC-k (``x0_t`` = x̂₀ at the predicted x_t) from ``hist[-1]`` to t."""
    s, m0 = hist[-1]
    h = t.lam - s.lam
    rks = [(hist[-1 - j][0].lam - s.lam) / h for j in range(1, k)]
    diffs = [(hist[-1 - j][1] - m0) / rks[j - 1] for j in range(1, k)]
    if x0_t is not None:
        rks, diffs = rks + [1.0], diffs + [x0_t - m0]
    B, a = unipc_coefficients(h, rks, variant, predictor=x0_t is None)
    out = (t.sigma / s.sigma) * x - t.alpha * math.expm1(-h) * m0
    for coef, d in zip(a, diffs):
        out = out - (t.alpha * B * coef) * d
    return out


def _plan(process, steps=None, order=2, variant="bh1", grid="logsnr", rho=7.0, **_) -> SamplingPlan:
    times = solver_grid(process, budget_of(process, steps), grid, rho)
    return SamplingPlan(sorted(times), len(times))


@torch.no_grad()
def _unipc(denoiser: Denoiser, x_T: torch.Tensor, steps: int | None = None, *, order: int = 2, variant: str = "bh2",
           corrector: bool = True, grid: str = "optimized", rho: float = 7.0, generator: GeneratorLike = None,
           callback: Callable[[dict], None] | None = None, progress: bool = False) -> torch.Tensor:
    """UniPC (Zhao et al. 2023; module docstring): ``x_T`` ``[B, …]`` → ``x_0`` ``[B, …]`` in ``steps`` evaluations.

    Args:
        order: p of UniP-p, 1–3 (with the corrector the step is of order p + 1).
        variant: ``bh1`` (B(h) = h) or ``bh2`` (B(h) = e^h − 1).
        corrector: apply UniC after every predictor step (false: UniP alone).
        grid: ``sampler.grid``; ``rho``: ρ of the karras grid.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"sampler.order must be one of [1, 2, 3] (UniP-p); got {order!r}")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"sampler.variant must be one of {list(UNIPC_VARIANTS)}; got {variant!r}")
    check_denoiser(denoiser, "unipc")
    process = denoiser.process
    levels = levels_of(process, solver_grid(process, budget_of(process, steps), grid, rho))
    count = Counter(callback)
    x = x_T
    x0 = denoiser.predict(x, levels[0].t).x0
    hist = [(levels[0], x0)]
    count({"i": 0, "t": levels[0].t, "x": x, "x0": x0})
    for i in track(range(1, len(levels)), total=len(levels) - 1, description="UniPC", enabled=progress):
        t = levels[i]
        k = min(order, len(hist))  # warm-up: lower orders until the history is long enough
        x_pred = _update(x, hist, t, k, variant, None)  # UniP-k
        x0_t = denoiser.predict(x_pred, t.t).x0
        last = i == len(levels) - 1
        x = _update(x, hist, t, k, variant, x0_t) if corrector and not last else x_pred  # UniC-k
        hist = (hist + [(t, x0_t)])[-order:]
        count({"i": i, "t": t.t, "x": x, "x0": x0_t})
    return hist[-1][1]  # the final step to clean data: x̂₀ at the last grid time


unipc = solver_function(_unipc, _plan, "unipc")
