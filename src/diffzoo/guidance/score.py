"""Class-conditional sampling of Score SDE models with a time-dependent classifier.

Song et al. 2021, "Score-Based Generative Modeling through SDEs", §5 (eq. 14) and App. I.1: the
reverse SDE of the conditional distribution ``p_t(x | y)`` needs the conditional score, which Bayes'
rule splits into the unconditional score and the gradient of a classifier of perturbed data,

    ∇_x log p_t(x | y) = ∇_x log p_t(x) + ∇_x log p_t(y | x)          (Score SDE eq. 14).

With a scale ``s`` (the score of ``p_t(x) p_t(y | x)^s``, Dhariwal & Nichol 2021, §4; ``s = 1`` is
eq. 14 itself) this is classifier guidance in its ε form (:mod:`diffzoo.guidance.classifier`):
``ε̂ − σ(t)·s·g`` is the score ``s_θ + s·g``. :class:`ScoreClassifierGuidance` is that guidance with
the classifier of :class:`~diffzoo.lit.sde_classifier.SDEClassifierModule`, which sees
``time_scale · t`` as the score network does, plus the check that classifier and score model share
their SDE, time input and data scaling.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from ..denoisers import Denoiser, ScoreFnView
from ..errors import ConfigError
from .classifier import ClassifierGuidance

__all__ = ["ScoreClassifierGuidance", "sde_constants"]

GradFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sde_constants(sde: nn.Module) -> tuple[str, dict[str, float]]:
    """The SDE's kind and its constructor constants except the discretisation ``N`` (which sampling
    may change): ``("VPSDE", {"beta_min": 0.1, "beta_max": 20.0})``."""
    params = inspect.signature(type(sde).__init__).parameters
    return type(sde).__name__, {k: float(getattr(sde, k)) for k in params if k not in ("self", "N") and hasattr(sde, k)}


class ScoreClassifierGuidance(ClassifierGuidance):
    """Score SDE classifier guidance (Song et al. 2021, eq. 14 / App. I.1).

    Args:
        classifier: ``classifier(x, time_scale · t) → logits [B, K]`` (the network of an
            :class:`~diffzoo.lit.sde_classifier.SDEClassifierModule`); or give ``grad_fn`` instead.
        scale: the gradient scale ``s`` (1 = the conditional score of eq. 14; 0 = unguided).
        time_scale: the factor ``c`` of the classifier's time input ``c · t``.
        grad_fn: ``grad_fn(x, t, y) → ∇_x log p_t(y | x)`` at continuous ``t`` (e.g. an exact one),
            replacing the classifier.
        sde, data_transform: the forward process and data scaling the classifier was trained with,
            checked against the score model by :meth:`check_model` (``None``: not checked).

    Also callable in the earlier form ``guidance(model_fn, sde, y) → score_fn(x, t)`` with
    ``model_fn(x, t, y) → score`` (an unconditional model ignores ``y``).
    """

    def __init__(self, classifier: nn.Module | None = None, scale: float = 1.0, time_scale: float = 999.0,
                 grad_fn: GradFn | None = None, sde: nn.Module | None = None, data_transform: str | None = None):
        if not time_scale > 0:
            raise ValueError(f"ScoreClassifierGuidance: time_scale must be > 0, got {time_scale}")
        super().__init__(classifier, scale=scale, form="eps", grad_fn=grad_fn,
                         time_input=lambda t: float(time_scale) * t)
        self.time_scale = float(time_scale)
        self.trained_on = sde_constants(sde) if sde is not None else None
        self.data_transform = data_transform

    def forward(self, model_fn: Callable, sde: nn.Module, y: torch.Tensor | None, null_class: int | None = None):
        """The earlier form: ``score_fn(x, t)`` of the score ``model_fn(x, t, y)`` on ``sde``, guided towards ``y``."""
        base = Denoiser(lambda x, tau, y=None: model_fn(x, tau, y), sde, "score", model_time=lambda t: t, cond_keys=("y",))
        return ScoreFnView(self.wrap(base).bind(y=y))

    def check_model(self, sde: nn.Module, time_scale: float, data_transform: str) -> None:
        """Raise :class:`~diffzoo.errors.ConfigError` if the score model's SDE (kind and constants),
        time input or data scaling differ from the classifier's."""
        if self.trained_on is not None and self.trained_on != sde_constants(sde):
            raise ConfigError(f"guidance.classifier_ckpt was trained on {self.trained_on} but the score model uses "
                              f"{sde_constants(sde)}; train the classifier with the model's schedule "
                              "(diffzoo-train experiment=sde_classifier_<data> schedule=...)")
        if float(time_scale) != self.time_scale:
            raise ConfigError(f"guidance.classifier_ckpt feeds its net {self.time_scale:g}·t but the score model "
                              f"{float(time_scale):g}·t; set model.time_scale={float(time_scale):g} when training the classifier")
        if self.data_transform is not None and data_transform != self.data_transform:
            raise ConfigError(f"guidance.classifier_ckpt saw data with data_transform={self.data_transform!r}, the score "
                              f"model {data_transform!r}; set model.data_transform={data_transform} when training the classifier")

    def extra_repr(self) -> str:
        return f"scale={self.scale}, time_scale={self.time_scale}"
