"""The earlier call forms as adapters onto the denoiser contract.

Before the denoiser core, discrete-time samplers took ``eps_fn(x, t)`` with ``t`` an int64 ``[B]``
tensor of indices into the *original* schedule, and score samplers ``score_fn(x, t)`` with a float
``t`` ``[B]`` (the SDE time, or σ for NCSN). Users' scripts call ``samplers.ddim(eps_fn, schedule,
x_T, steps)`` and the like; these adapters turn such functions into denoisers
(:func:`eps_denoiser`, :func:`score_denoiser`) and denoisers back into such functions
(:class:`EpsFnView`, :class:`ScoreFnView`), so both forms reach the same sampler code.
"""

from __future__ import annotations

from typing import Callable

import torch

from .base import Denoiser

__all__ = ["eps_denoiser", "score_denoiser", "EpsFnView", "ScoreFnView", "schedule_positions"]


def schedule_positions(schedule, t: torch.Tensor) -> torch.Tensor:
    """Map original-schedule indices ``t`` (int64 ``[B]``, what an ``eps_fn`` receives) to positions in
    ``schedule`` (respaced or not), raising if a ``t`` is not one of its steps."""
    steps = schedule.timesteps.to(t.device)
    pos = torch.searchsorted(steps, t.long()).clamp(max=steps.numel() - 1)
    if not bool((steps[pos] == t).all()):
        missing = sorted(set(t.tolist()) - set(steps.tolist()))[:5]
        raise ValueError(f"timesteps {missing} are not steps of the schedule the model function was built on "
                         f"({steps.numel()} steps); give it the schedule the sampler runs on")
    return pos


class EpsFnView:
    """A denoiser on a discrete schedule seen as ``eps_fn(x, t)`` (``t``: int64 original indices) →
    ``[B, C(+C'), …]``: ε̂ followed by the network's extra channels. ``.denoiser`` is the denoiser
    itself, which the samplers use directly (so an x̂₀ transform they add lands where it should)."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        process = self.denoiser.process
        pos = schedule_positions(process, t) if hasattr(process, "timesteps") else t  # respaced: original index → step
        p = self.denoiser.predict(x, pos.to(torch.float64))
        return p.eps if p.extra is None else torch.cat([p.eps, p.extra], dim=1)


class ScoreFnView:
    """A denoiser seen as ``score_fn(x, t) → ∇_x log p_t(x)`` (``t``: float ``[B]``, process time)."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser.predict(x, t).score


def eps_denoiser(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule) -> Denoiser:
    """A denoiser from ``eps_fn(x, t_int64) → [B, C(+C'), …]`` on a (possibly respaced)
    :class:`~diffzoo.schedules.DiscreteSchedule`; ``eps_fn`` is called with the original indices."""
    if isinstance(eps_fn, Denoiser):
        return eps_fn
    if isinstance(eps_fn, EpsFnView):
        return eps_fn.denoiser

    def net_fn(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return eps_fn(x, tau.round().long())

    return Denoiser(net_fn, schedule, "eps")


def score_denoiser(score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], process) -> Denoiser:
    """A denoiser from ``score_fn(x, t) → ∇_x log p_t(x)`` on ``process`` (an SDE, or a σ ladder with
    ``t`` = σ); ``score_fn`` gets the process time as a tensor ``[B]`` in x's dtype."""
    if isinstance(score_fn, Denoiser):
        return score_fn
    if isinstance(score_fn, ScoreFnView):
        return score_fn.denoiser
    return Denoiser(lambda x, tau: score_fn(x, tau), process, "score", model_time=_identity)


def _identity(t):
    return t
