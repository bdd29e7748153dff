"""β tables for discrete-time Gaussian diffusion.

Each function returns a float64 tensor ``[T]`` with ``betas[i]`` the variance added by the
forward step into index ``i`` (index 0 is the papers' t = 1).

Three different schedules are called "linear" in the literature; each has its own name here:

* :func:`linear_betas` — DDPM (Ho et al. 2020, §4): β linear in t from 1e-4 to 0.02.
* :func:`scaled_linear_betas` — Improved DDPM / ADM: DDPM's end points rescaled by 1000/T so
  that any T gives the same process as T = 1000 (improved-diffusion ``get_named_beta_schedule``).
* :func:`sqrt_linear_betas` — Latent Diffusion: linear in √β (LDM ``make_beta_schedule("linear")``).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "linear_betas",
    "scaled_linear_betas",
    "cosine_betas",
    "sqrt_linear_betas",
    "betas_from_alphas_cumprod",
]


def _check_T(T: int) -> None:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"schedule: T must be a positive integer, got {T!r}")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's schedule (Ho et al. 2020, §4): ``β_t = linspace(beta_start, beta_end, T)``.

    Returns: float64 ``[T]``.
    """
    _check_T(T)
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def scaled_linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Improved DDPM's "linear": DDPM's end points times 1000/T (Nichol & Dhariwal 2021, §3.2 code).

    Returns: float64 ``[T]``.
    """
    _check_T(T)
    scale = 1000.0 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM's cosine schedule (Nichol & Dhariwal 2021, eq. 17).

    ``ᾱ(t) = f(t)/f(0)`` with ``f(t) = cos²(((t/T) + s)/(1 + s) · π/2)`` and
    ``β_t = min(1 − ᾱ(t)/ᾱ(t−1), max_beta)``.

    Returns: float64 ``[T]``.
    """
    _check_T(T)
    steps = torch.arange(T + 1, dtype=torch.float64) / T

    def f(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    alphas_cumprod = f(steps) / f(torch.zeros((), dtype=torch.float64))
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


def sqrt_linear_betas(T: int, beta_start: float = 0.0015, beta_end: float = 0.0195) -> torch.Tensor:
    """Latent Diffusion's "linear" schedule: ``β = linspace(√beta_start, √beta_end, T)²``
    (Rombach et al. 2022; LDM ``make_beta_schedule``).

    Returns: float64 ``[T]``.
    """
    _check_T(T)
    return torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=torch.float64) ** 2


def betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Invert ``ᾱ_t = ∏_{s≤t}(1 − β_s)``: ``β_t = 1 − ᾱ_t / ᾱ_{t−1}`` with ``ᾱ_0 := 1``.

    Used by respacing (Improved DDPM §4): the β of a sub-sequence are recomputed so that the
    sub-sequence has exactly the same ᾱ values. Shapes: ``[K] → [K]`` (float64).
    """
    ac = alphas_cumprod.to(torch.float64)
    prev = torch.cat([torch.ones(1, dtype=torch.float64, device=ac.device), ac[:-1]])
    return 1 - ac / prev
