"""NCSN's 2-D toy (Song & Ermon 2019, §3.2–3.3, Fig. 3): why Langevin dynamics needs annealing.

Data ``0.8·N((5, 5), I) + 0.2·N((−5, −5), I)``; samples start from ``U[−8, 8]²``. Plain Langevin
(1000 steps, α = 0.1, the paper's update ``x + (α/2)s + √α z``, NCSN Alg. 1) with the data score
cannot move mass between the separated modes, so it keeps the start's ≈ 50/50 split; annealed
Langevin (σ = exp(linspace(ln 20, 0, 10)), 100 steps per level, α_i = 0.1·(σ_i/σ_L)²) recovers the
0.8 weight. The exact scores of the toy (:func:`exact_scores`); the two samplers of the paper's
figure run in :func:`diffzoo.claims.papers.toys.ncsn_toy_samplers`.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["MAIN_MODE_WEIGHT", "N_SAMPLES", "exact_scores", "fraction_in_main_mode"]

N_SAMPLES = 1280  # NCSN code, annealed_sampling_exp
MAIN_MODE_WEIGHT = 0.8


def exact_scores() -> dict[str, Callable]:
    """The two exact scores ``score(x [n, 2], σ [n]) → [n, 2]`` of the toy at noise level σ ≥ 1:
    the NCSN code's (``GMMDistAnneal``: the mixture with component std σ) and the true noisy score
    of ``x + σz`` (component std √(1 + σ²), what denoising score matching learns)."""
    from ..data.gaussian_mixture import GaussianMixture

    gm = GaussianMixture([MAIN_MODE_WEIGHT, 1 - MAIN_MODE_WEIGHT], [[5.0, 5.0], [-5.0, -5.0]], covs=1.0)

    def code_score(x, sigma):
        # NCSN code GMMDistAnneal: components N(μ_k, σ² I); unit components under x + s z with s = √(σ² − 1).
        s = torch.sqrt(torch.clamp(sigma.double() ** 2 - 1.0, min=0.0))
        return gm.score(x, alpha=1.0, sigma=s).to(x.dtype)

    def noisy_score(x, sigma):
        return gm.score(x, alpha=1.0, sigma=sigma.double()).to(x.dtype)  # ∇ log (p * N(0, σ² I))

    return {"exact (NCSN code's toy score)": code_score, "exact (noisy data score)": noisy_score}


def fraction_in_main_mode(x: torch.Tensor) -> float:
    """The fraction of points ``[n, 2]`` on the (5, 5) side of the line x₁ + x₂ = 0."""
    return (x.sum(-1) > 0).double().mean().item()
