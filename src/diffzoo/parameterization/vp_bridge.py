"""A discrete DDPM ε-model read as a continuous-time VP score model (Score SDE §3.4, App. B, App. C).

Score SDE (§3.4 and App. B) shows that DDPM's Markov chain ``x_i = √(1 − β_i) x_{i−1} + √β_i z``
with ``β_i = β̄_i / N`` is the ``N``-step discretisation of the VP SDE (eq. 11)

    dx = −½ β(t) x dt + √β(t) dw,    β(t) = β_min + t (β_max − β_min),  t ∈ [0, 1],

when ``β̄_i`` runs linearly from ``β_min`` to ``β_max`` (``β̄_i = β_min + (i/(N−1))(β_max − β_min)``,
App. B). A DDPM model with the linear β table ``β_1 … β_T`` is therefore a model of
that VP SDE with

    N = T,   β_min = T · β_1,   β_max = T · β_T

(``T = 1000``, ``β`` from 1e-4 to 0.02 gives Score SDE's defaults β_min = 0.1, β_max = 20).

Its ε-network becomes a score by Tweedie's relation ``∇ log p_t(x) = −E[ε | x_t = x] / σ(t)``
(Vincent 2011; Score SDE App. C and ``models/utils.get_score_fn`` for VP models), with ``σ(t)``
the VP marginal std ``√(1 − exp(−∫_0^t β))`` (the VP perturbation kernel, eq. 29) and the
network fed the continuous label ``(T − 1)·t`` — the time input of the "DDPM cont." evaluation
of Score SDE (its Table 2, and "the maximum value of time embedding is assumed to be 999" in
``models/utils.py``). diffzoo's U-Nets take a float time input (sinusoidal embedding of a real
number), so the label is fed as is, without rounding to a discrete index:

    s_θ(x, t) = −ε_θ(x, (T − 1)·t) / σ(t).

Only linear β tables have this continuous limit; a cosine or sqrt-linear table is refused
(:func:`vpsde_of_schedule`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ..schedules.discrete import DiscreteSchedule
from ..schedules.sde import VPSDE

__all__ = ["DDPMAsVPSDE", "vpsde_of_schedule", "ddpm_score_fn", "ddpm_as_vpsde", "LINEAR_BETA_RTOL"]

# A β table counts as linear when every β_i lies within this fraction of β_T of the straight line
# through β_1 and β_T (float64 linspace tables are linear to ~1e-16).
LINEAR_BETA_RTOL = 1e-6


class DDPMAsVPSDE(NamedTuple):
    """The VP SDE a DDPM model discretises, the model's score on it, and the time scale ``T − 1``
    that maps SDE time ``t ∈ [0, 1]`` to the network's time input."""

    sde: VPSDE
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    time_scale: float


def vpsde_of_schedule(schedule: DiscreteSchedule, name: str | None = None) -> VPSDE:
    """The VP SDE whose ``T``-step discretisation is ``schedule``'s linear β table (Score SDE App. B):
    ``VPSDE(beta_min=T·β_1, beta_max=T·β_T, N=T)``.

    Args:
        schedule: a :class:`DiscreteSchedule` with ``T ≥ 2`` increasing, linear betas, not respaced.
        name: what the β table is called (e.g. ``"cosine_betas"``), for the error message.
    Raises: ``ValueError`` (one line naming the schedule) for a non-linear, decreasing or respaced table.
    """
    label = f"{name} " if name else ""
    betas = schedule.betas.to(torch.float64).cpu()
    T = betas.numel()
    if T < 2:
        raise ValueError(f"the β table {label}has T={T} step; the VP SDE limit needs T ≥ 2")
    if not torch.equal(schedule.timesteps.cpu(), torch.arange(T)):
        raise ValueError(f"the schedule {label}is respaced ({T} of {int(schedule.timesteps.max()) + 1} steps); "
                         "the VP SDE limit needs the model's full training schedule")
    line = torch.linspace(float(betas[0]), float(betas[-1]), T, dtype=torch.float64)
    if not betas[-1] > betas[0] or (betas - line).abs().max() > LINEAR_BETA_RTOL * betas[-1]:
        raise ValueError(f"the β table {label}is not DDPM's linear schedule (β_i linear in i and increasing); only "
                         "schedule=linear (or scaled_linear) has the VP SDE limit of Score SDE App. B")
    # Score SDE §3.4 / App. B: β_i = β̄_i / N with β̄_i linear from β_min to β_max, N = T.
    return VPSDE(beta_min=T * float(betas[0]), beta_max=T * float(betas[-1]), N=T)


def ddpm_score_fn(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sde: VPSDE, channels: int,
                  time_scale: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``score_fn(x, t) = −ε_θ(x, time_scale·t)[:, :channels] / σ(t)`` (Score SDE App. C; module docstring).

    Args:
        eps_fn: ``eps_fn(x, τ) → [B, ≥channels, …]`` with float time input ``τ`` ``[B]`` (the first
            ``channels`` output channels are ε; a learned-variance net's extra ones are dropped).
        sde: the VP SDE (gives ``σ(t)``).
        channels: ``C`` of the data.
        time_scale: ``T − 1`` for a model trained on indices ``0 … T−1``.
    Returns: ``score_fn(x [B, C, …], t [B] float) → [B, C, …]``, differentiable in ``x``.
    """

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = eps_fn(x, time_scale * t.to(x.dtype))[:, :channels]
        sigma = sde.sigma(t).to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return -eps / sigma  # ∇ log p_t = −ε*/σ(t) (Tweedie; Score SDE App. C)

    return score_fn


def ddpm_as_vpsde(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: DiscreteSchedule,
                  channels: int, name: str | None = None) -> DDPMAsVPSDE:
    """A DDPM ε-model on ``schedule`` as a VP score model: its SDE (:func:`vpsde_of_schedule`) and
    its score (:func:`ddpm_score_fn` with ``time_scale = T − 1``). ``eps_fn`` must accept float times."""
    sde = vpsde_of_schedule(schedule, name)
    time_scale = float(schedule.T - 1)
    return DDPMAsVPSDE(sde, ddpm_score_fn(eps_fn, sde, channels, time_scale), time_scale)
