"""What every guidance method shares: the denoiser contracts, ε ↔ score, and step look-ups.

Guidance turns a denoiser into a denoiser (DESIGN.md): it takes the *conditional model function*

    model_fn(x, t, y) → network output [B, C(+C), …]     (y int64 [B]; the null class = "no label")

and returns the plain ``eps_fn(x, t)`` every sampler takes, so samplers never know whether, or how,
they are guided. ``t`` is always the int64 ``[B]`` tensor of indices into the *original* schedule
(the samplers' contract); extra output channels (a learned variance) pass through untouched.

An ε-prediction and a score are two views of one quantity: for ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε``,
``∇ log p_t(x_t) = −ε*(x_t) / √(1 − ᾱ_t)`` (DDPM §3.2 / Song et al. 2021, eq. 11; Vincent 2011),
so a guidance term added to the score is a term subtracted from ε, scaled by ``√(1 − ᾱ_t)``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..schedules.discrete import DiscreteSchedule, extract

__all__ = [
    "EpsFn", "ModelFn", "Guidance", "NoGuidance", "eps_to_score", "score_to_eps", "schedule_positions",
    "check_labels",
]

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def eps_to_score(eps: torch.Tensor, schedule: DiscreteSchedule, pos: torch.Tensor) -> torch.Tensor:
    """``∇ log p_t(x) = −ε / √(1 − ᾱ_t)``; ``pos`` int64 ``[B]`` indexes ``schedule``."""
    return -eps / extract(schedule.sqrt_one_minus_alphas_cumprod, pos, eps)


def score_to_eps(score: torch.Tensor, schedule: DiscreteSchedule, pos: torch.Tensor) -> torch.Tensor:
    """``ε = −√(1 − ᾱ_t) · ∇ log p_t(x)`` (the inverse of :func:`eps_to_score`)."""
    return -score * extract(schedule.sqrt_one_minus_alphas_cumprod, pos, score)


def schedule_positions(schedule: DiscreteSchedule, t: torch.Tensor) -> torch.Tensor:
    """Map original-schedule indices ``t`` (int64 ``[B]``, what ``eps_fn`` receives) to positions
    in ``schedule`` (respaced or not), raising if a ``t`` is not one of its steps."""
    steps = schedule.timesteps.to(t.device)
    pos = torch.searchsorted(steps, t.long()).clamp(max=steps.numel() - 1)
    if not bool((steps[pos] == t).all()):
        missing = sorted(set(t.tolist()) - set(steps.tolist()))[:5]
        raise ValueError(
            f"guidance: timesteps {missing} are not steps of the schedule it was given ({steps.numel()} steps); "
            "give the guidance the schedule the sampler runs on"
        )
    return pos


def check_labels(y: torch.Tensor | None, batch: int, what: str) -> torch.Tensor:
    """``y`` as int64 ``[batch]`` (a scalar is broadcast); a clear error when it is missing."""
    if y is None:
        raise ValueError(f"{what} needs class labels y (set y=<class> or leave y=null for one row per class)")
    y = torch.as_tensor(y).long()
    y = y.expand(batch) if y.ndim == 0 else y
    if y.shape != (batch,):
        raise ValueError(f"{what}: labels y must have shape [{batch}], got {tuple(y.shape)}")
    return y


class Guidance(nn.Module):
    """A guidance method: ``guidance(model_fn, schedule, y, null_class) → eps_fn(x, t)``.

    Args of the call:
        model_fn: ``model_fn(x, t, y) → [B, C(+C), …]`` (see the module docstring); an
            unconditional model ignores ``y``.
        schedule: the schedule the sampler will walk (possibly respaced); the wrapper reads
            ᾱ (and, for the mean shift, Σ) there.
        y: int64 ``[B]`` target labels (or ``None`` where the method needs none).
        null_class: the label meaning "no class" (classifier-free guidance), or ``None``.

    It is an ``nn.Module`` so that a method holding a network (a classifier) follows ``.to(device)``.
    ``scale`` is the guidance strength (0 = unguided for every method).
    """

    scale: float = 0.0

    def forward(self, model_fn: ModelFn, schedule: DiscreteSchedule, y: torch.Tensor | None,
                null_class: int | None = None) -> EpsFn:  # pragma: no cover - abstract
        raise NotImplementedError


class NoGuidance(Guidance):
    """The model as it is: ``eps_fn(x, t) = model_fn(x, t, y)`` (``y`` may be ``None``)."""

    name = "none"  # in output folders and summaries

    def forward(self, model_fn: ModelFn, schedule: DiscreteSchedule, y: torch.Tensor | None,
                null_class: int | None = None) -> EpsFn:
        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model_fn(x, t, None if y is None else check_labels(y, x.shape[0], "sampling").to(x.device))

        return eps_fn
