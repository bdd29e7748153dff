"""What every forward process shares: the Gaussian marginal ``x_t = α(t)·x_0 + σ(t)·ε`` and
everything that follows from α and σ alone.

A *forward process* — :class:`~diffzoo.schedules.DiscreteSchedule` (DDPM), the SDEs of Score SDE
(:class:`~diffzoo.schedules.VPSDE`, :class:`~diffzoo.schedules.SubVPSDE`,
:class:`~diffzoo.schedules.VESDE`) and NCSN's :class:`~diffzoo.schedules.ladder.SigmaLadder` —
implements :meth:`GaussianProcess.alpha`, :meth:`GaussianProcess.sigma`, its time domain
``[t_min, t_max]`` (noise grows with t) and :meth:`GaussianProcess.prior_sample`. This mixin
then owns, once for all of them (see ``docs/ARCHITECTURE.md``, "Denoiser core"):

* the log signal-to-noise ratio ``λ(t) = log(α/σ)`` and its inverse;
* the conversions between the four things a network may predict (Kingma et al. 2021, VDM §2;
  Salimans & Ho 2022, §4): ``x_0``, ``ε``, the score ``∇ log p_t(x) = −ε/σ`` and ``v = α ε − σ x_0``;
* the Gaussian posterior ``q(x_s | x_t, x_0)`` between two noise levels ``s < t``, which is the
  ancestral step of DDPM (Ho et al. 2020, eqs. 6–7), of respaced chains (Nichol & Dhariwal 2021,
  §4), of DDIM's σ̂ row and of SMLD (Score SDE App. F) alike;
* default time grids for samplers.

``t`` may be a Python number (every sample at the same time; conversions then use Python-float
coefficients, the fast path of samplers) or a tensor ``[B]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from ..utils.tensors import bcast

__all__ = ["GaussianProcess", "PosteriorStep", "SPACINGS", "check_grid", "increasing"]

# How a sampler spreads its steps over the time domain (see GaussianProcess.time_grid).
SPACINGS = ("uniform", "quad", "even")


class PosteriorStep(NamedTuple):
    """``q(x_s | x_t, x_0) = N(coef_x0·x_0 + coef_xt·x_t, var_small)`` for ``s < t`` (floats).

    ``var_large`` is the transition variance ``σ²_{t|s}`` of ``q(x_t | x_s)`` — DDPM's ``σ² = β``
    choice (§3.2) on the chain through ``s`` and ``t``. ``alpha_*`` / ``sigma_*`` are the marginal
    coefficients at both ends (``s`` = clean data: 1 and 0).
    """

    coef_x0: float
    coef_xt: float
    var_small: float
    var_large: float
    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float


def _is_number(t) -> bool:
    return isinstance(t, (int, float)) or (torch.is_tensor(t) and t.ndim == 0)


class GaussianProcess:
    """Mixin of every forward process ``x_t = α(t) x_0 + σ(t) ε`` (module docstring).

    Subclasses implement ``alpha``, ``sigma`` (float64 tensors ``[B]`` for times ``[B]``),
    ``t_min`` / ``t_max`` and ``prior_sample``; they may refine ``model_time``, ``time_grid`` and
    ``default_steps``.
    """

    # ------------------------------------------------------------------ what subclasses give
    def alpha(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def t_min(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def t_max(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def prior_sample(self, shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:  # pragma: no cover
        """Draw ``x_T`` of ``shape`` (``shape[0]`` = batch) from the process's prior."""
        raise NotImplementedError

    @property
    def sampling_eps(self) -> float:
        """The smallest time samplers evaluate the model at (``t_min`` unless the model is singular there)."""
        return float(self.t_min)

    @property
    def default_steps(self) -> int | None:
        """The number of steps a sampler walks when none is given (``None``: it must be given)."""
        return None

    def model_time(self, t):
        """The time a network of this process is given at process time ``t`` (float64 tensor, or a
        float for a number): the identity here; a respaced discrete schedule maps to the indices
        of the original schedule."""
        return float(t) if _is_number(t) else torch.as_tensor(t).to(torch.float64)

    def continuous_view(self):
        """``(sde, t_map)``: the Score SDE process whose time ``u`` is this process's time
        ``t_map(u)`` (``None``: the same time), for samplers that integrate an SDE / ODE (PC, the
        probability-flow ODE, the ODE likelihood). Raises ``ValueError`` when there is none."""
        raise ValueError(f"{type(self).__name__} has no continuous-time SDE: the PC / ODE samplers and the ODE "
                         "likelihood need a Score SDE process (schedule=vpsde | subvpsde | vesde) or a DDPM model "
                         "with schedule=linear (the VP SDE its β table discretises, Score SDE App. B)")

    # ------------------------------------------------------------------ α, σ, λ
    # True where α and σ never change after construction (tables in buffers, closed forms): alpha_sigma
    # then remembers the floats of every time a sampler asked for (its grid), so a solver step reads them
    # instead of interpolating a table again — the per-step overhead diffusers avoids by tabulating.
    coefficients_fixed = False
    _ALPHA_SIGMA_MEMO_SIZE = 8192

    def alpha_sigma(self, t):
        """``(α(t), σ(t))``: Python floats for a number ``t``, float64 tensors ``[B]`` otherwise."""
        if _is_number(t):
            key = float(t)
            memo = self.__dict__.get("_alpha_sigma_memo") if self.coefficients_fixed else None
            if memo is not None and key in memo:
                return memo[key]
            tt = torch.tensor([key], dtype=torch.float64)
            value = float(self.alpha(tt)[0]), float(self.sigma(tt)[0])
            if self.coefficients_fixed:
                memo = self.__dict__.setdefault("_alpha_sigma_memo", {})
                if len(memo) >= self._ALPHA_SIGMA_MEMO_SIZE:
                    memo.clear()
                memo[key] = value
            return value
        return self.alpha(t), self.sigma(t)

    def lambda_(self, t) -> torch.Tensor:
        """Half the log signal-to-noise ratio, ``λ(t) = log α(t) − log σ(t)`` (DPM-Solver's λ), float64."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def t_of_lambda(self, lam) -> torch.Tensor:
        """The time with ``λ(t) = lam`` (λ decreases in t), by bisection on ``[t_min, t_max]``, float64."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = torch.full_like(lam, float(self.t_min))
        hi = torch.full_like(lam, float(self.t_max))
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            above = self.lambda_(mid) > lam  # still too little noise: go later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def _coefficients(self, t, like: torch.Tensor):
        """``(α, σ)`` ready to multiply ``like``: floats for a number ``t``, ``[B, 1, …]`` tensors else."""
        a, s = self.alpha_sigma(t)
        if isinstance(a, float):
            return a, s
        return bcast(a, like), bcast(s, like)

    # ------------------------------------------------------------------ conversions (VDM §2; v: Salimans & Ho §4)
    def x0_from_eps(self, x: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """Invert the marginal for ``x_0``: ``x̂_0 = x/α − (σ/α) ε`` (DDPM eq. 15)."""
        a, s = self.alpha_sigma(t)
        if isinstance(a, float):
            return (1.0 / a) * x - (s / a) * eps
        return bcast(1.0 / a, x) * x - bcast(s / a, x) * eps

    def eps_from_x0(self, x: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
        """``ε = (x − α x_0) / σ``: the noise consistent with ``x_0`` (improved-diffusion
        ``_predict_eps_from_xstart``)."""
        a, s = self._coefficients(t, x)
        return (x - a * x0) / s

    def eps_from_score(self, x: torch.Tensor, t, score: torch.Tensor) -> torch.Tensor:
        """Tweedie / Vincent 2011: ``ε* = −σ ∇ log p_t`` (Score SDE App. C)."""
        _, s = self._coefficients(t, x)
        return -s * score

    def score_from_eps(self, x: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """``∇ log p_t(x) = −ε / σ`` (Score SDE App. C; DDPM §3.2)."""
        _, s = self._coefficients(t, x)
        return -eps / s

    def x0_from_score(self, x: torch.Tensor, t, score: torch.Tensor) -> torch.Tensor:
        """Tweedie's formula ``E[x_0 | x_t] = (x + σ² ∇ log p_t(x)) / α``."""
        a, s = self._coefficients(t, x)
        return (x + (s * s) * score) / a

    def from_v(self, x: torch.Tensor, t, v: torch.Tensor):
        """``(x_0, ε)`` from ``v = α ε − σ x_0`` (Salimans & Ho 2022, §4): with ``x = α x_0 + σ ε``,
        ``x_0 = (α x − σ v)/(α² + σ²)`` and ``ε = (σ x + α v)/(α² + σ²)`` (``α² + σ² = 1`` for VP)."""
        a, s = self._coefficients(t, x)
        norm = a * a + s * s
        return (a * x - s * v) / norm, (s * x + a * v) / norm

    def v_from(self, x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
        """``v = α ε − σ x_0`` (Salimans & Ho 2022, §4)."""
        a, s = self._coefficients(t, eps)
        return a * eps - s * x0

    # ------------------------------------------------------------------ the posterior between two levels
    def posterior(self, t: float, s: float | None) -> PosteriorStep:
        """``q(x_s | x_t, x_0)`` for times ``s < t`` (``s = None``: the clean data, α = 1, σ = 0).

        With ``α_{t|s} = α_t/α_s`` and ``σ²_{t|s} = σ_t² − α²_{t|s} σ_s²`` (the transition
        ``q(x_t | x_s)``; VDM eq. 3), the posterior is ``N(α_s σ²_{t|s}/σ_t² · x_0 +
        α_{t|s} σ_s²/σ_t² · x_t, σ²_{t|s} σ_s²/σ_t²)`` (VDM eq. 6). For a DDPM chain these are
        ``posterior_mean_coef1 / coef2`` and ``β̃`` of DDPM eqs. 6–7, with ``σ²_{t|s} = β``. The
        differences are formed as ``σ²_{t|s} = −σ_t² expm1(2(λ_t − λ_s))`` (no cancellation).
        """
        a_t, s_t = self.alpha_sigma(float(t))
        if s is None:
            return PosteriorStep(1.0, 0.0, 0.0, s_t * s_t, a_t, s_t, 1.0, 0.0)
        a_s, s_s = self.alpha_sigma(float(s))
        shrink = self._transition_fraction(a_t, s_t, a_s, s_s)
        return PosteriorStep(
            coef_x0=a_s * shrink,
            coef_xt=(a_t / a_s) * (s_s / s_t) ** 2,
            var_small=s_s * s_s * shrink,
            var_large=s_t * s_t * shrink,
            alpha_t=a_t, sigma_t=s_t, alpha_s=a_s, sigma_s=s_s,
        )

    def _transition_fraction(self, a_t: float, s_t: float, a_s: float, s_s: float) -> float:
        """``σ²_{t|s}/σ_t² = 1 − e^{2(λ_t − λ_s)}`` (VDM eq. 3), formed with ``expm1`` (no cancellation)."""
        return -math.expm1(2 * (math.log(a_t / s_t) - math.log(a_s / s_s)))

    # ------------------------------------------------------------------ time grids
    def time_grid(self, steps: int, spacing: str = "uniform", t_end: float | None = None) -> list[float]:
        """``steps`` increasing times from ``t_end`` (default :attr:`sampling_eps`) to ``t_max`` at which a
        sampler evaluates the model, largest last; the step after the smallest goes to clean data.

        ``"uniform"`` / ``"even"``: evenly spaced in t; ``"quad"``: quadratically spaced, dense at
        small t (the DDIM code's ``skip_type="quad"`` in continuous time). Discrete schedules and σ
        ladders refine this (their times are indices / levels).
        """
        check_grid(steps, spacing)
        lo, hi = float(self.sampling_eps if t_end is None else t_end), float(self.t_max)
        if not lo < hi:
            raise ValueError(f"time_grid: the end time {lo} must lie below t_max = {hi}")
        if steps == 1:
            return [hi]
        u = torch.linspace(0, 1, steps, dtype=torch.float64)
        if spacing == "quad":
            u = u**2
        return (lo + (hi - lo) * u).tolist()


def check_grid(steps, spacing: str, limit: int | None = None) -> None:
    """Raise ``ValueError`` naming ``sampler.steps`` / the spacing when they are not valid."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {list(SPACINGS)}; got {spacing!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1 or (limit is not None and steps > limit):
        upper = f", {limit}]" if limit is not None else ", ∞)"
        raise ValueError(f"sampler.steps={steps!r} must be an integer in [1{upper} for this forward process")


def increasing(values: Sequence[float]) -> list[float]:
    """Sorted unique values (a grid built by rounding may repeat an index)."""
    return sorted(set(float(v) for v in values))
