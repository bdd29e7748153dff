"""Discrete-time Gaussian forward process q(x_{1:T} | x_0) and its closed forms.

Notation follows Ho et al. 2020 (DDPM): ``α_t = 1 − β_t``, ``ᾱ_t = ∏_{s≤t} α_s``. Index ``i``
of every table is the paper's ``t = i + 1``. Tables are float64 buffers (they follow
``.to(device)`` and are cast to the data's dtype at use).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .betas import betas_from_alphas_cumprod

__all__ = ["DiscreteSchedule", "PosteriorMoments", "extract"]


class PosteriorMoments(NamedTuple):
    """Mean, variance and log-variance of a Gaussian, each broadcastable to ``x``'s shape."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor


def extract(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather ``table[t]`` (``t``: int64 ``[B]``) and reshape to ``[B, 1, …, 1]`` matching
    ``like``'s rank, cast to ``like``'s dtype and device."""
    out = table.to(like.device)[t.to(like.device).long()]
    return out.to(like.dtype).reshape(t.shape[0], *([1] * (like.ndim - 1)))


class DiscreteSchedule(nn.Module):
    """The forward process of DDPM for a given β table.

    Args:
        betas: float ``[T]`` with values in (0, 1).
        timesteps: int64 ``[T]`` — for a respaced schedule, the index of each step in the
            original schedule (what the network was trained on); defaults to ``arange(T)``.

    The marginal is ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)`` (DDPM eq. 4), exposed as
    ``x_t = α(t)·x_0 + σ(t)·ε`` with ``α(t) = √ᾱ_t`` and ``σ(t) = √(1 − ᾱ_t)``.
    """

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

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale ``√ᾱ_t`` for int64 ``t`` ``[B]`` → float64 ``[B]``."""
        return self.sqrt_alphas_cumprod.to(t.device)[t]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise scale ``√(1 − ᾱ_t)`` for int64 ``t`` ``[B]`` → float64 ``[B]``."""
        return self.sqrt_one_minus_alphas_cumprod.to(t.device)[t]

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
        """Invert eq. 4 for x_0: ``x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t`` (DDPM eq. 15)."""
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 for ε: ``ε = (x_t/√ᾱ_t − x_0) / √(1/ᾱ_t − 1)``."""
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0
        ) / extract(self.sqrt_recipm1_alphas_cumprod, t, x_t)

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
    """Sub-sequences τ of ``range(T)`` with ``steps`` elements.

    ``"uniform"``: ``range(0, T, T // steps)`` (DDIM code ``skip_type="uniform"``);
    ``"quad"``: ``int(linspace(0, √(0.8 T), steps)²)`` (DDIM code ``skip_type="quad"``);
    ``"even"``: ``round(linspace(0, T − 1, steps))`` — includes both ends (improved-diffusion).
    """
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    if kind == "uniform":
        skip = T // steps
        seq = list(range(0, T, skip))[:steps]
    elif kind == "quad":
        import numpy as np

        seq = sorted({int(v) for v in (np.linspace(0, np.sqrt(T * 0.8), steps) ** 2)})
    elif kind == "even":
        seq = sorted({int(round(v)) for v in torch.linspace(0, T - 1, steps, dtype=torch.float64).tolist()})
    else:
        raise ValueError(f"skip must be one of 'uniform', 'quad', 'even'; got {kind!r}")
    return seq


__all__.append("spaced_timesteps")
