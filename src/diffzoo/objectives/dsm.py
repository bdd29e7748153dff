"""Denoising score matching (Vincent 2011) over a σ ladder (NCSN) and over an SDE (Score SDE).

Both take a *score function* ``score_fn(x, t, **cond) → ∇_x log p_t(x)`` (a network wrapped by
:class:`~diffzoo.parameterization.score.ScoreParameterization`, or an exact score in tests), the
forward process and clean data, and own their noise-level distribution and weighting. The
minimiser of each is the true noisy score: ``E[target | x̃] = ∇ log p_σ(x̃)``, so with the exact
score the loss sits at its minimum ``E‖target‖² − E‖∇log p_σ‖²`` (weighted) and its gradient in
any direction vanishes.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..utils.tensors import bcast
from ..schedules.ladder import SigmaLadder
from ..schedules.sde import SDE
from .base import ObjectiveOutput

__all__ = ["NCSNDSMLoss", "SDEDSMLoss", "SDE_WEIGHTINGS", "SDE_REDUCTIONS"]

ScoreFn = Callable[..., torch.Tensor]
Weighting = Literal["sigma2", "likelihood"]
Reduction = Literal["mean", "sum"]
SDE_WEIGHTINGS = ("sigma2", "likelihood")
SDE_REDUCTIONS = ("mean", "sum")



def _flat(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1)


class NCSNDSMLoss(nn.Module):
    """NCSN's objective (Song & Ermon 2019, eqs. 5–6) on a :class:`~diffzoo.schedules.ladder.SigmaLadder`:

    ``ℓ(θ; σ) = ½ E ‖s_θ(x̃, σ) + (x̃ − x)/σ²‖²`` with ``x̃ = x + σz`` (eq. 5), averaged over
    ``σ = σ_i``, ``i ~ U{1, …, L}``, with weight ``λ(σ) = σ^anneal_power`` (eq. 6; ``anneal_power
    = 2`` makes every term of order one, NCSN §4.2). The squared error is summed over dimensions
    and averaged over the batch (NCSN code, ``anneal_dsm_score_estimation``).

    Args:
        anneal_power: the exponent p of ``λ(σ) = σ^p`` (NCSN: 2).
    """

    def __init__(self, anneal_power: float = 2.0):
        super().__init__()
        self.anneal_power = float(anneal_power)

    def check_schedule(self, schedule) -> None:
        """Raise :class:`ConfigError` unless ``schedule`` is a σ ladder."""
        if not isinstance(schedule, SigmaLadder):
            raise ConfigError(f"objective=dsm_ncsn needs a σ ladder (schedule=ncsn_sigmas or ncsnv2_sigmas), got "
                              f"{type(schedule).__name__}; an SDE trains with objective=dsm_sde")

    def forward(self, score_fn: ScoreFn, schedule, x0: torch.Tensor, **cond) -> ObjectiveOutput:
        """``score_fn(x̃, σ, **cond)`` with σ float ``[B]``; ``x0`` ``[B, …]``. Returns the batch
        mean, the per-sample weighted losses ``[B]`` and the drawn σ ``[B]``."""
        i = schedule.sample_index(x0.shape[0], device=x0.device)
        sigma = schedule.sigmas.to(x0.device)[i].to(x0.dtype)
        z = torch.randn_like(x0)
        x_tilde = x0 + bcast(sigma, x0) * z
        target = -z / bcast(sigma, x0)  # ∇ log q_σ(x̃ | x) = −(x̃ − x)/σ²   (eq. 5)
        score = score_fn(x_tilde, sigma, **cond)
        per_sample = 0.5 * _flat(score - target).pow(2).sum(-1) * sigma.pow(self.anneal_power)  # eq. 6
        return ObjectiveOutput(per_sample.mean(), per_sample, sigma)


class SDEDSMLoss(nn.Module):
    """Score SDE's continuous-time objective (Song et al. 2021, eq. 7; reference ``losses.py``):

    ``E_t λ(t) E ‖s_θ(x_t, t) − ∇ log p_0t(x_t | x_0)‖²`` with ``t ~ U(eps, T)``,
    ``x_t = α(t)x_0 + σ(t)z`` and ``∇ log p_0t = −z/σ(t)``.

    * ``weighting="sigma2"``: ``λ(t) = σ(t)²``, computed as ``‖σ(t)s_θ + z‖²`` (the paper's choice,
      ``λ ∝ 1/E‖∇log p_0t‖²``);
    * ``weighting="likelihood"``: ``λ(t) = g(t)²`` (Song et al. 2021b, likelihood weighting),
      computed as ``g(t)² ‖s_θ + z/σ(t)‖²``.

    ``reduce`` says how the squared error is reduced over the data dimensions, as the reference
    configs do: ``"mean"`` (``reduce_mean=True``: VP / sub-VP) or ``"sum"`` — which, as in the
    reference code, is ``½·sum`` (``reduce_mean=False``: VE). The batch is always averaged.

    Args:
        weighting: one of :data:`SDE_WEIGHTINGS`.
        reduce: one of :data:`SDE_REDUCTIONS`.
        eps: the smallest time (1e-5 in Score SDE), avoiding σ(0) ≈ 0.
    """

    def __init__(self, weighting: Weighting = "sigma2", reduce: Reduction = "mean", eps: float = 1e-5):
        super().__init__()
        if weighting not in SDE_WEIGHTINGS:
            raise ValueError(f"objective.weighting: unknown {weighting!r}; allowed: {list(SDE_WEIGHTINGS)}")
        if reduce not in SDE_REDUCTIONS:
            raise ValueError(f"objective.reduce: unknown {reduce!r}; allowed: {list(SDE_REDUCTIONS)}")
        if not 0 < eps < 1:
            raise ValueError(f"objective.eps must lie in (0, 1), got {eps}")
        self.weighting, self.reduce, self.eps = weighting, reduce, float(eps)

    def check_schedule(self, schedule) -> None:
        """Raise :class:`ConfigError` unless ``schedule`` is an SDE."""
        if not isinstance(schedule, SDE):
            raise ConfigError(f"objective=dsm_sde needs an SDE (schedule=vpsde, subvpsde or vesde), got "
                              f"{type(schedule).__name__}; a σ ladder trains with objective=dsm_ncsn")

    def _reduce(self, sq: torch.Tensor) -> torch.Tensor:
        # losses.py: reduce_op = mean, or 0.5 · sum over the data dimensions.
        return _flat(sq).mean(-1) if self.reduce == "mean" else 0.5 * _flat(sq).sum(-1)

    def forward(self, score_fn: ScoreFn, sde, x0: torch.Tensor, **cond) -> ObjectiveOutput:
        """``score_fn(x_t, t, **cond)`` with t float ``[B]``; ``sde`` an
        :class:`~diffzoo.schedules.sde.SDE`; ``x0`` ``[B, …]``. Returns the batch mean, the
        per-sample losses ``[B]`` and the drawn ``t`` ``[B]``."""
        B = x0.shape[0]
        t = torch.rand(B, device=x0.device, dtype=x0.dtype) * (sde.T - self.eps) + self.eps  # t ~ U(eps, T)
        z = torch.randn_like(x0)
        mean, std = sde.marginal_prob(x0, t)
        x_t = mean + bcast(std, x0) * z
        score = score_fn(x_t, t, **cond)
        if self.weighting == "sigma2":
            per_sample = self._reduce((score * bcast(std, x0) + z) ** 2)  # λ = σ²: ‖σ s + z‖²
        else:
            g2 = sde.sde(torch.zeros_like(x0), t).diffusion.to(x0.dtype) ** 2  # λ = g(t)²
            per_sample = self._reduce((score + z / bcast(std, x0)) ** 2) * g2
        return ObjectiveOutput(per_sample.mean(), per_sample, t)
