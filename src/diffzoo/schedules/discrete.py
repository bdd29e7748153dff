"""Discrete-time Gaussian forward process q(x_{1:T} | x_0) and its closed forms.

Notation follows Ho et al. 2020 (DDPM): ``α_t = 1 − β_t``, ``ᾱ_t = ∏_{s≤t} α_s``. Index ``i``
of every table is the paper's ``t = i + 1``. Tables are float64 buffers (they follow
``.to(device)`` and are cast to the data's dtype at use).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..utils.random import GeneratorLike, randn
from ..utils.tensors import bcast
from .betas import betas_from_alphas_cumprod
from .process import GaussianProcess, check_grid

__all__ = ["DiscreteSchedule", "PosteriorMoments", "extract", "LINEAR_BETA_RTOL"]

# A β table counts as linear when every β_i lies within this fraction of β_T of the straight line
# through β_1 and β_T (float64 linspace tables are linear to ~1e-16).
LINEAR_BETA_RTOL = 1e-6


class PosteriorMoments(NamedTuple):
    """Mean, variance and log-variance of a Gaussian, each broadcastable to ``x``'s shape."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor


def extract(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather ``table[t]`` (``t``: int64 ``[B]``) as ``[B, 1, …, 1]`` matching ``like``'s rank,
    cast to ``like``'s dtype and device."""
    return bcast(table.to(like.device)[t.to(like.device).long()], like)


class DiscreteSchedule(nn.Module, GaussianProcess):
    """The forward process of DDPM for a given β table.

    Args:
        betas: float ``[T]`` with values in (0, 1).
        timesteps: int64 ``[T]`` — for a respaced schedule, the index of each step in the
            original schedule (what the network was trained on); defaults to ``arange(T)``.

    The marginal is ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)`` (DDPM eq. 4), exposed as
    ``x_t = α(t)·x_0 + σ(t)·ε`` with ``α(t) = √ᾱ_t`` and ``σ(t) = √(1 − ᾱ_t)``.
    """

    coefficients_fixed = True  # α, σ are fixed by the constructor (GaussianProcess.alpha_sigma memo)

    def __init__(self, betas: torch.Tensor, timesteps: torch.Tensor | None = None):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("DiscreteSchedule: every beta must lie in (0, 1)")
        T = betas.numel()
        if timesteps is None:
            timesteps = torch.arange(T, dtype=torch.long)
        timesteps = torch.as_tensor(timesteps, dtype=torch.long).flatten()
        if timesteps.numel() != T:
            raise ValueError(f"DiscreteSchedule: {timesteps.numel()} timesteps for {T} betas")

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64, device=betas.device), alphas_cumprod[:-1]])
        # DDPM eq. 7: β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # β̃_1 = 0; its log is clipped to log β̃_2 as in the DDPM / improved-diffusion code.
        if T > 1:
            posterior_log_variance_clipped = torch.log(
                torch.cat([posterior_variance[1:2], posterior_variance[1:]])
            )
            # "fixedlarge" (σ_t² = β_t) uses β̃_2 at t = 1 for a well-defined decoder (DDPM code).
            fixedlarge_log_variance = torch.log(torch.cat([posterior_variance[1:2], betas[1:]]))
        else:
            posterior_log_variance_clipped = torch.log(betas)
            fixedlarge_log_variance = torch.log(betas)

        self.register_buffer("timesteps", timesteps, persistent=False)
        for name, value in dict(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1.0 - alphas_cumprod).sqrt(),
            sqrt_recip_alphas_cumprod=alphas_cumprod.rsqrt(),
            sqrt_recipm1_alphas_cumprod=(1.0 / alphas_cumprod - 1.0).sqrt(),
            posterior_variance=posterior_variance,
            posterior_log_variance_clipped=posterior_log_variance_clipped,
            fixedlarge_log_variance=fixedlarge_log_variance,
            # DDPM eq. 7: μ̃_t = coef1 · x_0 + coef2 · x_t
            posterior_mean_coef1=betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        ).items():
            self.register_buffer(name, value, persistent=False)

    # ------------------------------------------------------------------ basics
    @property
    def T(self) -> int:
        """Number of steps."""
        return self.betas.numel()

    def extra_repr(self) -> str:
        return f"T={self.T}, beta[0]={self.betas[0].item():.3g}, beta[-1]={self.betas[-1].item():.3g}"

    # ------------------------------------------------------------------ the process at real-valued t
    @property
    def t_min(self) -> float:
        return 0.0

    @property
    def t_max(self) -> float:
        return float(self.T - 1)

    @property
    def default_steps(self) -> int:
        """Ancestral sampling walks every step by default (DDPM Algorithm 2)."""
        return self.T

    def _interpolate_log(self, table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``table`` (positive, float64 ``[T]``) at real-valued ``t`` ``[B]``: exact at integers,
        linear in ``log table`` between them (DPM-Solver's interpolation of ``log α_t`` for discrete
        models, Lu et al. 2022, App. D)."""
        t = t.to(torch.float64).clamp(0, self.T - 1)
        lo = torch.floor(t).long().clamp(max=self.T - 1)
        hi = (lo + 1).clamp(max=self.T - 1)
        w = t - lo
        values = table.to(t.device)
        log_v = (1 - w) * torch.log(values[lo]) + w * torch.log(values[hi])
        return torch.where(w == 0, values[lo], torch.exp(log_v))

    def alpha(self, t) -> torch.Tensor:
        """Signal scale ``α(t) = √ᾱ_t`` → float64 ``[B]``. Integer ``t`` (int64 ``[B]``) reads the
        table; real-valued ``t ∈ [0, T−1]`` interpolates ``log α`` linearly between steps."""
        t = torch.as_tensor(t)
        if not t.is_floating_point():
            return self.sqrt_alphas_cumprod.to(t.device)[t]
        return self._interpolate_log(self.sqrt_alphas_cumprod, t)

    def sigma(self, t) -> torch.Tensor:
        """Noise scale ``σ(t) = √(1 − ᾱ_t)`` → float64 ``[B]`` (integer t: the table; real t: from α(t))."""
        t = torch.as_tensor(t)
        if not t.is_floating_point():
            return self.sqrt_one_minus_alphas_cumprod.to(t.device)[t]
        on_grid = torch.floor(t) == t
        exact = self.sqrt_one_minus_alphas_cumprod.to(t.device)[t.to(torch.float64).clamp(0, self.T - 1).long()]
        between = torch.sqrt(-torch.expm1(2 * torch.log(self.alpha(t))))
        return torch.where(on_grid, exact, between)

    def model_time(self, t):
        """The index into the *original* schedule that the network was trained on at step ``t`` of
        this (possibly respaced) schedule, float64; linear between steps for real-valued ``t``."""
        if isinstance(t, (int, float)) or (torch.is_tensor(t) and t.ndim == 0):
            t = float(t)
            lo = min(int(math.floor(t)), self.T - 1)
            hi = min(lo + 1, self.T - 1)
            w = t - lo
            steps = self.timesteps
            return float(steps[lo]) if w == 0 else (1 - w) * float(steps[lo]) + w * float(steps[hi])
        t = torch.as_tensor(t).to(torch.float64)
        lo = torch.floor(t).long().clamp(0, self.T - 1)
        hi = (lo + 1).clamp(max=self.T - 1)
        w = t - lo
        steps = self.timesteps.to(t.device, torch.float64)
        return (1 - w) * steps[lo] + w * steps[hi]

    def prior_sample(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """``x_T ~ N(0, I)`` (DDPM Algorithm 2, line 1)."""
        return randn(shape, generator, device=device, dtype=dtype)

    def time_grid(self, steps: int, spacing: str = "uniform", t_end: float | None = None) -> list[float]:
        """Step indices τ for a sampler with ``steps`` steps (:func:`spaced_timesteps`), increasing."""
        if t_end not in (None, 0, 0.0):
            raise ValueError(f"a discrete schedule's chain always ends at index 0; got t_end={t_end}")
        return [float(i) for i in spaced_timesteps(self.T, steps, spacing)]

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``ᾱ_t / (1 − ᾱ_t)`` → float64 ``[B]``."""
        ac = self.alphas_cumprod.to(t.device)[t]
        return ac / (1 - ac)

    # ------------------------------------------------------------------ q
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` (DDPM eq. 4): ``√ᾱ_t x_0 + √(1 − ᾱ_t) ε``.

        Shapes: ``x0``, ``noise`` ``[B, …]``; ``t`` int64 ``[B]`` → ``[B, …]``.
        """
        return (
            extract(self.sqrt_alphas_cumprod, t, x0) * x0
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> PosteriorMoments:
        """Moments of ``q(x_t | x_0)`` (DDPM eq. 4)."""
        mean = extract(self.sqrt_alphas_cumprod, t, x0) * x0
        var = extract(1.0 - self.alphas_cumprod, t, x0)
        return PosteriorMoments(mean, var, torch.log(var))

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> PosteriorMoments:
        """Moments of ``q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I)`` (DDPM eqs. 6–7).

        Shapes: ``x0``, ``x_t`` ``[B, …]``; ``t`` int64 ``[B]``.
        The log-variance at ``t = 1`` (index 0) is clipped to ``log β̃_2``.
        """
        mean = (
            extract(self.posterior_mean_coef1, t, x_t) * x0
            + extract(self.posterior_mean_coef2, t, x_t) * x_t
        )
        return PosteriorMoments(
            mean,
            extract(self.posterior_variance, t, x_t),
            extract(self.posterior_log_variance_clipped, t, x_t),
        )

    # ------------------------------------------------------------------ conversions
    def predict_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 for x_0 (DDPM eq. 15): :meth:`~diffzoo.schedules.process.GaussianProcess.x0_from_eps`."""
        return self.x0_from_eps(x_t, t, eps)

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 for ε: :meth:`~diffzoo.schedules.process.GaussianProcess.eps_from_x0`."""
        return self.eps_from_x0(x_t, t, x0)

    def log_variance(self, kind: str) -> torch.Tensor:
        """Fixed reverse-process log-variance table ``[T]`` (float64), DDPM §3.2.

        ``"fixedlarge"``: σ_t² = β_t (with β̃_2 at t = 1, as in the DDPM code);
        ``"fixedsmall"``: σ_t² = β̃_t (clipped at t = 1).
        """
        if kind == "fixedlarge":
            return self.fixedlarge_log_variance
        if kind == "fixedsmall":
            return self.posterior_log_variance_clipped
        raise ValueError(f"variance must be one of 'fixedlarge', 'fixedsmall'; got {kind!r}")

    # ------------------------------------------------------------------ the continuous-time limit
    def as_vpsde(self, name: str | None = None):
        """The VP SDE whose ``T``-step discretisation is this linear β table (Score SDE §3.4, App. B):
        DDPM's chain ``x_i = √(1 − β_i) x_{i−1} + √β_i z`` with ``β_i = β̄_i / N`` and ``β̄_i`` linear
        from ``β_min`` to ``β_max`` is the VP SDE (eq. 11) discretised with ``N = T`` steps, so
        ``VPSDE(beta_min=T·β_1, beta_max=T·β_T, N=T)`` (T = 1000 and 1e-4 … 0.02 give Score SDE's
        0.1 and 20). Its time ``u ∈ [0, 1]`` is step ``(T − 1)·u`` of this schedule (the "DDPM cont."
        label of Score SDE Table 2; "the maximum value of time embedding is assumed to be 999").

        Args:
            name: what the β table is called (e.g. ``"cosine_betas"``), for the error message.
        Raises ``ValueError`` (one line naming the schedule) for a non-linear, decreasing or respaced table.
        """
        from .sde import VPSDE

        label = f"{name} " if name else ""
        betas = self.betas.to(torch.float64).cpu()
        T = betas.numel()
        if T < 2:
            raise ValueError(f"the β table {label}has T={T} step; the VP SDE limit needs T ≥ 2")
        if not torch.equal(self.timesteps.cpu(), torch.arange(T)):
            raise ValueError(f"the schedule {label}is respaced ({T} of {int(self.timesteps.max()) + 1} steps); "
                             "the VP SDE limit needs the model's full training schedule")
        line = torch.linspace(float(betas[0]), float(betas[-1]), T, dtype=torch.float64)
        if not betas[-1] > betas[0] or (betas - line).abs().max() > LINEAR_BETA_RTOL * betas[-1]:
            raise ValueError(f"the β table {label}is not DDPM's linear schedule (β_i linear in i and increasing); only "
                             "schedule=linear (or scaled_linear) has the VP SDE limit of Score SDE App. B")
        return VPSDE(beta_min=T * float(betas[0]), beta_max=T * float(betas[-1]), N=T).to(self.betas.device)

    def continuous_view(self):
        """``(VP SDE, u ↦ (T − 1)·u)`` for a linear β table (:meth:`as_vpsde`)."""
        scale = float(self.T - 1)
        return self.as_vpsde(), (lambda u: scale * u)

    # ------------------------------------------------------------------ respacing
    def respace(self, timesteps) -> "DiscreteSchedule":
        """A schedule over a sub-sequence of steps with the *same* ᾱ values there
        (Nichol & Dhariwal 2021, §4): ``β_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}``.

        Args:
            timesteps: increasing indices into this schedule (list or int64 tensor ``[K]``).
        Returns: a ``DiscreteSchedule`` with ``K`` steps whose ``timesteps`` map back to the
        *original* indices (those the network was trained on).
        """
        idx = torch.as_tensor(list(timesteps) if not torch.is_tensor(timesteps) else timesteps,
                              dtype=torch.long).flatten()
        if idx.numel() == 0:
            raise ValueError("respace: at least one timestep is needed")
        if bool((idx[1:] <= idx[:-1]).any()) or idx.min() < 0 or idx.max() >= self.T:
            raise ValueError(f"respace: timesteps must be strictly increasing in [0, {self.T - 1}]")
        idx = idx.to(self.alphas_cumprod.device)
        betas = betas_from_alphas_cumprod(self.alphas_cumprod[idx])
        return DiscreteSchedule(betas, timesteps=self.timesteps[idx]).to(self.betas.device)


def spaced_timesteps(T: int, steps: int, kind: str = "uniform") -> list[int]:
    """Sub-sequences τ of ``range(T)`` with ``steps`` elements, increasing.

    ``"uniform"``: ``τ_k = ⌊k·T/S⌋`` for ``k = 0 … S−1`` — the DDIM code's ``range(0, T, T // S)``
    (``skip_type="uniform"``) whenever S divides T, and otherwise still S steps whose top lies within
    ``⌈T/S⌉`` of ``T − 1`` (cutting ``range(0, T, T // S)`` to S entries would start the chain far
    below T from pure noise); ``"quad"``: ``int(linspace(0, √(0.8 T), S)²)`` (DDIM code
    ``skip_type="quad"``; repeated indices dropped); ``"even"``: ``round(linspace(0, T − 1, S))`` —
    both ends included (improved-diffusion's respacing).
    """
    check_grid(steps, kind, limit=T)
    if kind == "uniform":
        seq = [k * T // steps for k in range(steps)]
    elif kind == "quad":
        import numpy as np

        seq = sorted({int(v) for v in (np.linspace(0, np.sqrt(T * 0.8), steps) ** 2)})
    else:
        seq = sorted({int(round(v)) for v in torch.linspace(0, T - 1, steps, dtype=torch.float64).tolist()})
    return seq


__all__.append("spaced_timesteps")
