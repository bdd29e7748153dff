"""What every guidance method shares: denoiser → denoiser, and the earlier call form.

A guidance method (an ``nn.Module``, so a classifier it holds follows ``.to(device)``) turns a
:class:`~diffzoo.denoisers.Denoiser` into a guided denoiser with :meth:`Guidance.wrap`; samplers
never know whether, or how, they are guided. The labels reach it as conditioning ``y`` (int64
``[B]``), bound with :meth:`~diffzoo.denoisers.Denoiser.bind` after wrapping.

The earlier call form ``guidance(model_fn, schedule, y, null_class) → eps_fn(x, t)`` (``model_fn(x,
t, y)``, ``t`` int64 indices into the original schedule) still works: it builds the denoiser of
``model_fn`` on ``schedule``, wraps and binds it, and returns it seen as an ``eps_fn``
(:class:`~diffzoo.denoisers.EpsFnView`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..denoisers import Denoiser, EpsFnView

__all__ = ["Guidance", "NoGuidance", "ModelFn", "check_labels", "model_fn_denoiser"]

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def check_labels(y, batch: int, what: str) -> torch.Tensor:
    """``y`` as int64 ``[batch]`` (a scalar is broadcast); a clear error when it is missing."""
    if y is None:
        raise ValueError(f"{what} needs class labels y (set y=<class> or leave y=null for one row per class)")
    y = torch.as_tensor(y).long()
    y = y.expand(batch) if y.ndim == 0 else y
    if y.shape != (batch,):
        raise ValueError(f"{what}: labels y must have shape [{batch}], got {tuple(y.shape)}")
    return y


def model_fn_denoiser(model_fn: ModelFn, schedule, null_class: int | None = None) -> Denoiser:
    """The ε-denoiser of ``model_fn(x, t, y)`` (``t`` int64 original indices, ``y`` int64 ``[B]`` or
    ``None``) on a discrete ``schedule``; ``null_class`` is its "no label" class, if it has one."""

    def net_fn(x: torch.Tensor, tau: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return model_fn(x, tau.round().long(), y)

    null = {"y": int(null_class)} if null_class is not None else None
    return Denoiser(net_fn, schedule, "eps", cond_keys=("y",), null_cond=null)


class Guidance(nn.Module):
    """A guidance method. ``scale`` is its strength (0 = unguided for every method); ``name`` its
    short name in output folders and summaries."""

    scale: float = 0.0
    name: str = "guidance"

    def wrap(self, denoiser: Denoiser) -> Denoiser:  # pragma: no cover - abstract
        """The guided denoiser."""
        raise NotImplementedError

    def forward(self, model_fn: ModelFn, schedule, y: torch.Tensor | None, null_class: int | None = None):
        """The earlier form: ``eps_fn(x, t)`` of ``model_fn`` on ``schedule``, guided towards ``y``."""
        guided = self.wrap(model_fn_denoiser(model_fn, schedule, null_class))
        if y is not None:
            guided = guided.bind(y=y if torch.is_tensor(y) else torch.as_tensor(y))
        return EpsFnView(guided)


class NoGuidance(Guidance):
    """The model as it is (conditional on ``y`` if it is given and the model takes labels)."""

    name = "none"

    def wrap(self, denoiser: Denoiser) -> Denoiser:
        return denoiser

    def forward(self, model_fn: ModelFn, schedule, y: torch.Tensor | None, null_class: int | None = None):
        """The earlier form: ``eps_fn(x, t) = model_fn(x, t, y)`` (no schedule needed)."""

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model_fn(x, t, None if y is None else check_labels(y, x.shape[0], "sampling").to(x.device))

        return eps_fn
