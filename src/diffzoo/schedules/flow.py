"""The rectified-flow process and the velocity view of any forward process.

**Rectified flow** (Liu et al. 2022, "Flow Straight and Fast", eq. 1; the "conditional OT" path of
Lipman et al. 2023, eq. 20 with σ_min = 0) joins data and noise by a straight line,

    x_t = (1 − t)·x₀ + t·ε,      t ∈ [0, 1],   ε ~ N(0, I),

i.e. a Gaussian process with ``α(t) = 1 − t`` and ``σ(t) = t``. **Convention:** the papers put the
noise at time 0 (Liu: ``X_t = t X₁ + (1 − t) X₀`` with ``X₀`` noise, ``X₁`` data); diffzoo's
processes all grow noise with t, so here ``t`` is the papers' ``1 − t``: t = 0 is data, t = 1 is the
prior N(0, I), and sampling integrates from t = 1 down to t = 0.

**Velocity view.** Every process ``x_t = α(t) x₀ + σ(t) ε`` moves a pair ``(x₀, ε)`` with velocity

    u = dx_t/dt = α'(t)·x₀ + σ'(t)·ε            (Lipman et al. 2023, Theorem 3, eq. 15, in x₀ / ε form)

— for rectified flow ``u = ε − x₀`` (Liu et al. 2022, eq. 1). A network that predicts ``u``
(``prediction="flow"``) is read through :func:`x0_eps_from_flow`, which solves the 2×2 system
``x = α x₀ + σ ε``, ``u = α' x₀ + σ' ε``; and the marginal velocity ``E[u | x_t]`` that any denoiser
implies, ``α' x̂₀ + σ' ε̂``, is the probability-flow ODE of its process written in the process's own
time (so the flow samplers run every model). ``α'`` and ``σ'`` come from the process's own
``d_alpha_sigma`` when it has one, else from automatic differentiation of its ``alpha`` / ``sigma``
(exact for the closed-form SDEs; for a DDPM table, exact for its log-linear interpolation between
steps).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..utils.random import GeneratorLike, randn
from ..utils.tensors import bcast
from .process import GaussianProcess

__all__ = ["RectifiedFlow", "alpha_sigma_derivatives", "flow_from", "x0_eps_from_flow"]


def _is_number(t) -> bool:
    return isinstance(t, (int, float)) or (torch.is_tensor(t) and t.ndim == 0)


class RectifiedFlow(nn.Module, GaussianProcess):
    """``x_t = (1 − t) x₀ + t ε`` on ``t ∈ [0, 1]`` (module docstring; Liu et al. 2022, eq. 1, with
    time reversed to diffzoo's "noise grows with t"), prior ``N(0, I)`` at ``t = 1``.

    Args:
        time_scale: the network sees ``τ = time_scale · t`` (sinusoidal embeddings built for DDPM's
            step indices; 999 as the reference rectified-flow code, which feeds ``999 t``).
    """

    coefficients_fixed = True  # α, σ are fixed by the constructor (GaussianProcess.alpha_sigma memo)

    def __init__(self, time_scale: float = 999.0):
        super().__init__()
        if not float(time_scale) > 0:
            raise ValueError(f"schedule.time_scale must be positive, got {time_scale!r}")
        self.time_scale = float(time_scale)

    def extra_repr(self) -> str:
        return f"time_scale={self.time_scale}"

    # ------------------------------------------------------------------ the process
    def alpha(self, t) -> torch.Tensor:
        """``α(t) = 1 − t`` (Liu et al. 2022, eq. 1), float64 ``[B]``."""
        return 1.0 - torch.as_tensor(t).to(torch.float64)

    def sigma(self, t) -> torch.Tensor:
        """``σ(t) = t`` (Liu et al. 2022, eq. 1), float64 ``[B]``."""
        return torch.as_tensor(t).to(torch.float64) * 1.0

    def d_alpha_sigma(self, t):
        """``(α'(t), σ'(t)) = (−1, 1)``: floats for a number ``t``, float64 ``[B]`` tensors otherwise."""
        if _is_number(t):
            return -1.0, 1.0
        t = torch.as_tensor(t, dtype=torch.float64)
        return -torch.ones_like(t), torch.ones_like(t)

    @property
    def t_min(self) -> float:
        return 0.0

    @property
    def t_max(self) -> float:
        return 1.0

    @property
    def sampling_eps(self) -> float:
        """Samplers run to ``t = 0``: the velocity is regular there (x̂₀ = x, ε̂ = x + u)."""
        return 0.0

    def model_time(self, t):
        """``τ = time_scale · t`` (a float for a number, float64 ``[B]`` else)."""
        if _is_number(t):
            return self.time_scale * float(t)
        return self.time_scale * torch.as_tensor(t).to(torch.float64)

    def prior_sample(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """``x_1 ~ N(0, I)`` of ``shape`` (one generator, or one per sample)."""
        return randn(tuple(shape), generator, device=device, dtype=dtype)

    def continuous_view(self):
        raise ValueError("the rectified-flow process has no Score SDE view (PC / ode need one): sample it with "
                         "sampler=flow_euler | flow_heun | flow_rk45 (its ODE), ddim or ddpm")

    # ------------------------------------------------------------------ the posterior, safe at both ends
    def _transition_fraction(self, a_t: float, s_t: float, a_s: float, s_s: float) -> float:
        """``σ²_{t|s}/σ_t² = 1 − r²`` with ``r = α_t σ_s / (α_s σ_t)`` (VDM eqs. 3 and 6), written without
        logarithms so that :meth:`GaussianProcess.posterior` holds at ``t = 1`` (α = 0) and ``s = 0`` (σ = 0)."""
        if not (s_t > 0 and a_s > 0):
            raise ValueError(f"posterior needs 0 ≤ s < t ≤ 1, got σ_t={s_t}, α_s={a_s}")
        return 1.0 - (a_t * s_s / (a_s * s_t)) ** 2


# ---------------------------------------------------------------------- the velocity view of any process
def alpha_sigma_derivatives(process, t):
    """``(α'(t), σ'(t))`` of ``process``: Python floats for a number ``t``, float64 ``[B]`` else.

    The process's own ``d_alpha_sigma(t)`` when it defines one; otherwise the derivatives of its
    ``alpha`` / ``sigma`` by automatic differentiation (a coefficient that does not depend on t,
    such as VE's α = 1, has derivative 0)."""
    own = getattr(process, "d_alpha_sigma", None)
    if own is not None:
        return own(t)
    number = _is_number(t)
    tt = torch.tensor([float(t)], dtype=torch.float64) if number else torch.as_tensor(t).detach().to(torch.float64)
    derivatives = []
    with torch.enable_grad():
        for fn in (process.alpha, process.sigma):
            leaf = tt.clone().requires_grad_(True)
            value = fn(leaf)
            grad = None
            if value.requires_grad:
                grad = torch.autograd.grad(value.sum(), leaf, allow_unused=True)[0]
            derivatives.append(torch.zeros_like(tt) if grad is None else grad.detach())
    _check_against_differences(process, tt, derivatives)
    if number:
        return float(derivatives[0][0]), float(derivatives[1][0])
    return derivatives[0], derivatives[1]


def _check_against_differences(process, t: torch.Tensor, derivatives) -> None:
    """Raise ``ValueError`` where autograd's α', σ' disagree with central differences — a process whose
    α, σ are not differentiable there (a DDPM table read at its integer steps, where the log-linear
    interpolation has a kink and a table lookup carries no gradient)."""
    lo, hi = float(process.t_min), float(process.t_max)
    h = 1e-6 * max(hi - lo, 1e-12)
    up, down = (t + h).clamp(lo, hi), (t - h).clamp(lo, hi)
    for fn, d, name in ((process.alpha, derivatives[0], "alpha"), (process.sigma, derivatives[1], "sigma")):
        with torch.no_grad():
            diff = (fn(up) - fn(down)) / (up - down)
        # the differences' rounding error is ~ eps·|f|/h (their truncation error, h²·f'''/6, is far smaller)
        atol = 1e-9 + 100 * torch.finfo(torch.float64).eps * float(fn(up).abs().max()) / h
        close = torch.isclose(d, diff, rtol=1e-3, atol=atol)
        if not bool(close.all()):
            bad = int((~close).nonzero()[0, 0])
            raise ValueError(f"{type(process).__name__} gives no d_alpha_sigma and its {name}(t) is not differentiable at "
                             f"t={float(t[bad])} (autograd {float(d[bad]):.4g}, differences {float(diff[bad]):.4g})")


def _coef(value, like: torch.Tensor):
    return value if isinstance(value, float) else bcast(value, like)


def flow_from(process, x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """The velocity ``u = α'(t) x₀ + σ'(t) ε`` ``[B, …]`` (Lipman et al. 2023, eq. 15; for rectified
    flow ``ε − x₀``, Liu et al. 2022, eq. 1) of the pair ``(x₀, ε)`` ``[B, …]`` at time ``t``."""
    da, ds = alpha_sigma_derivatives(process, t)
    return _coef(da, x0) * x0 + _coef(ds, eps) * eps


def x0_eps_from_flow(process, x: torch.Tensor, t, u: torch.Tensor):
    """``(x₀, ε)`` ``[B, …]`` from ``x = α x₀ + σ ε`` and ``u = α' x₀ + σ' ε`` (Cramer's rule, with
    ``det = α σ' − σ α' = α² d(σ/α)/dt > 0`` while noise grows): ``x₀ = (σ' x − σ u)/det``,
    ``ε = (α u − α' x)/det``. For rectified flow ``det = 1``: ``x₀ = x − t u``, ``ε = x + (1 − t) u``."""
    a, s = process.alpha_sigma(t)
    da, ds = alpha_sigma_derivatives(process, t)
    if isinstance(a, float):
        det = a * ds - s * da
        if not math.isfinite(det) or det == 0:
            raise ValueError(f"the velocity does not determine x0 at t={t} (α σ' − σ α' = {det})")
        return (ds * x - s * u) / det, (a * u - da * x) / det
    det = a * ds - s * da
    a, s, da, ds, det = (bcast(v, x) for v in (a, s, da, ds, det))
    return (ds * x - s * u) / det, (a * u - da * x) / det
