"""Class-conditional sampling of Score SDE models with a time-dependent classifier.

Song et al. 2021, "Score-Based Generative Modeling through SDEs", §5 (eq. 14) and App. I.1: the
reverse SDE of the conditional distribution ``p_t(x | y)`` needs the conditional score, which Bayes'
rule splits into the unconditional score and the gradient of a classifier of perturbed data,

    ∇_x log p_t(x | y) = ∇_x log p_t(x) + ∇_x log p_t(y | x)          (Score SDE eq. 14).

With a scale ``s`` (the score of ``p_t(x) p_t(y | x)^s``, Dhariwal & Nichol 2021, §4; ``s = 1`` is
eq. 14 itself) the guided score is

    s̃(x, t) = s_θ(x, t) + s · ∇_x log p_φ(y | x, t).

It is again a plain ``score_fn(x, t)``: the predictor–corrector and probability-flow ODE samplers
take it unchanged (guidance is a wrapper denoiser → denoiser). The classifier ``p_φ(y | x, t)`` is
trained on the SDE's perturbation kernel (:class:`~diffzoo.lit.sde_classifier.SDEClassifierModule`)
and fed ``time_scale · t``, as the score network is.

``guidance=classifier`` builds either kind of classifier guidance from its checkpoint
(:func:`load_classifier_guidance`): a continuous-time classifier gives :class:`ScoreClassifierGuidance`,
a discrete-time one (ADM) :class:`~diffzoo.guidance.classifier.ClassifierGuidance`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from .base import check_labels
from .classifier import FORMS, ClassifierGuidance, classifier_log_prob_grad

__all__ = [
    "ScoreFn", "ScoreClassifierGuidance", "classifier_guided_score", "sde_classifier_guidance",
    "load_classifier_guidance", "check_guidance_fits",
]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GradFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def classifier_guided_score(score: torch.Tensor, grad: torch.Tensor, scale: float) -> torch.Tensor:
    """Score SDE eq. 14 with a scale: ``∇ log p_t(x) + s · ∇ log p_t(y | x)``.

    ``score``, ``grad`` ``[B, …]`` → ``[B, …]`` (``score``'s dtype).
    """
    return score + scale * grad.to(score.dtype)


def _sde_constants(sde: nn.Module) -> tuple[str, dict[str, float]]:
    """The SDE's kind and its constructor constants except the discretisation ``N`` (which sampling
    may change): ``("VPSDE", {"beta_min": 0.1, "beta_max": 20.0})``."""
    params = inspect.signature(type(sde).__init__).parameters
    return type(sde).__name__, {k: float(getattr(sde, k)) for k in params if k not in ("self", "N") and hasattr(sde, k)}


class ScoreClassifierGuidance(nn.Module):
    """Score SDE classifier guidance as a score wrapper (Song et al. 2021, eq. 14 / App. I.1).

    Args:
        classifier: ``classifier(x, time_scale · t) → logits [B, K]`` (the network of an
            :class:`~diffzoo.lit.sde_classifier.SDEClassifierModule`); or give ``grad_fn`` instead.
        scale: the gradient scale ``s`` (1 = the conditional score of eq. 14; 0 = unguided).
        time_scale: the factor ``c`` of the classifier's time input ``c · t``.
        grad_fn: ``grad_fn(x, t, y) → ∇_x log p_t(y | x)`` at continuous ``t`` (e.g. an exact one),
            replacing the classifier.
        sde, data_transform: the forward process and data scaling the classifier was trained with,
            checked against the score model by :meth:`check_model` (``None``: not checked).

    Called as ``guidance(model_fn, sde, y) → score_fn(x, t)`` with ``model_fn(x, t, y) → score``
    (an unconditional model ignores ``y``); ``sde`` is accepted for the common guidance contract
    and not read (the time input is ``time_scale · t`` whatever the discretisation).
    """

    name = "classifier"  # in output folders and summaries

    def __init__(self, classifier: nn.Module | None = None, scale: float = 1.0, time_scale: float = 999.0,
                 grad_fn: GradFn | None = None, sde: nn.Module | None = None, data_transform: str | None = None):
        super().__init__()
        if (classifier is None) == (grad_fn is None):
            raise ValueError("ScoreClassifierGuidance needs exactly one of classifier (guidance.classifier_ckpt) or grad_fn")
        if not time_scale > 0:
            raise ValueError(f"ScoreClassifierGuidance: time_scale must be > 0, got {time_scale}")
        self.classifier = classifier
        self.grad_fn = grad_fn
        self.scale, self.time_scale = float(scale), float(time_scale)
        self.trained_on = _sde_constants(sde) if sde is not None else None
        self.data_transform = data_transform

    def log_prob_grad(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∇_x log p_t(y | x)`` ``[B, …]`` at continuous times ``t`` float ``[B]`` (``y`` int64 ``[B]``)."""
        if self.grad_fn is not None:
            return self.grad_fn(x, t, y)
        return classifier_log_prob_grad(self.classifier, x, self.time_scale * t, y)

    def forward(self, model_fn: Callable, sde: nn.Module | None, y: torch.Tensor | None,
                null_class: int | None = None) -> ScoreFn:
        def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            labels = check_labels(y, x.shape[0], "classifier guidance").to(x.device)
            t = torch.as_tensor(t, device=x.device)
            t = t.expand(x.shape[0]) if t.ndim == 0 else t
            score = model_fn(x, t, labels)
            if self.scale == 0:
                return score
            return classifier_guided_score(score, self.log_prob_grad(x, t, labels), self.scale)

        return score_fn

    def check_model(self, sde: nn.Module, time_scale: float, data_transform: str) -> None:
        """Raise :class:`~diffzoo.errors.ConfigError` if the score model's SDE (kind and constants),
        time input or data scaling differ from the classifier's."""
        if self.trained_on is not None and self.trained_on != _sde_constants(sde):
            raise ConfigError(f"guidance.classifier_ckpt was trained on {self.trained_on} but the score model uses "
                              f"{_sde_constants(sde)}; train the classifier with the model's schedule "
                              "(diffzoo-train experiment=sde_classifier_<data> schedule=...)")
        if float(time_scale) != self.time_scale:
            raise ConfigError(f"guidance.classifier_ckpt feeds its net {self.time_scale:g}·t but the score model "
                              f"{float(time_scale):g}·t; set model.time_scale={float(time_scale):g} when training the classifier")
        if self.data_transform is not None and data_transform != self.data_transform:
            raise ConfigError(f"guidance.classifier_ckpt saw data with data_transform={self.data_transform!r}, the score "
                              f"model {data_transform!r}; set model.data_transform={data_transform} when training the classifier")

    def extra_repr(self) -> str:
        return f"scale={self.scale}, time_scale={self.time_scale}"


def sde_classifier_guidance(module: nn.Module, scale: float = 1.0) -> ScoreClassifierGuidance:
    """:class:`ScoreClassifierGuidance` from a trained :class:`~diffzoo.lit.sde_classifier.SDEClassifierModule`
    (its network frozen in eval mode, its time input, SDE and data scaling)."""
    return ScoreClassifierGuidance(module.net.eval().requires_grad_(False), scale=scale, time_scale=module.time_scale,
                                   sde=module.schedule, data_transform=module.data_transform)


def load_classifier_guidance(classifier_ckpt: str, scale: float = 1.0, form: str = "eps",
                             variance: str | None = None) -> nn.Module:
    """The Hydra target of ``guidance=classifier``: guidance by the classifier of ``classifier_ckpt``.

    * a continuous-time classifier (``diffzoo-train experiment=sde_classifier_<data>``) →
      :class:`ScoreClassifierGuidance` for Score SDE models (``form`` must be ``eps``; ``variance`` unused);
    * a discrete-time one (``experiment=adm_classifier_<data>``) →
      :class:`~diffzoo.guidance.classifier.ClassifierGuidance` (ADM; ``variance=None`` means ``fixedlarge``).
    """
    from ..lit.build import load_module
    from ..lit.sde_classifier import SDEClassifierModule

    if classifier_ckpt in (None, "", "???"):
        raise ValueError("guidance=classifier needs guidance.classifier_ckpt=PATH (a checkpoint of diffzoo-train "
                         "experiment=adm_classifier_<data>, or experiment=sde_classifier_<data> for Score SDE models)")
    if form not in FORMS:
        raise ValueError(f"guidance.form must be one of {FORMS}, got {form!r}")
    path = Path(classifier_ckpt).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"guidance.classifier_ckpt={str(path)!r} does not exist; train one with diffzoo-train "
                                "experiment=adm_classifier_<data> (DDPM-family models) or sde_classifier_<data> (Score SDE)")
    module = load_module(path)
    if isinstance(module, SDEClassifierModule):
        if form != "eps":
            raise ValueError("guidance.form=mean is ADM's ancestral mean shift; a Score SDE classifier guides the score "
                             "(Score SDE eq. 14): set guidance.form=eps")
        return sde_classifier_guidance(module, scale)
    if not hasattr(module, "classify"):
        raise CheckpointError(f"guidance.classifier_ckpt={str(path)!r} holds a {type(module).__name__}, not a noise-aware "
                              "classifier (experiment=adm_classifier_* or sde_classifier_*)")
    return ClassifierGuidance(module.net.eval().requires_grad_(False), scale=scale, form=form,
                              variance=variance or "fixedlarge")


def check_guidance_fits(guidance: nn.Module, module: nn.Module) -> None:
    """Raise :class:`~diffzoo.errors.ConfigError` unless ``guidance`` can steer ``module``: a Score SDE
    model (a score model on an SDE) takes :class:`ScoreClassifierGuidance` (trained on the same SDE,
    time input and data scaling), every other model the discrete-time guidance methods."""
    from ..lit.score import ScoreModule
    from ..schedules.sde import SDE

    score_model = isinstance(module, ScoreModule)
    if isinstance(guidance, ScoreClassifierGuidance):
        if not (score_model and isinstance(module.schedule, SDE)):
            raise ConfigError(f"guidance.classifier_ckpt holds a continuous-time classifier (experiment=sde_classifier_*), "
                              f"which guides Score SDE models, not a {type(module).__name__} on "
                              f"{type(module.schedule).__name__}; use experiment=adm_classifier_<data> for this model")
        guidance.check_model(module.schedule, module.parameterization.time_scale, module.data_transform)
    elif score_model:
        raise ConfigError(f"a score model is guided through its score: guidance=classifier with a continuous-time "
                          f"classifier (diffzoo-train experiment=sde_classifier_<data>), got {type(guidance).__name__}")
