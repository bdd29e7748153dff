"""Guidance: wrappers that turn a denoiser into a denoiser (samplers never branch on them).

* :class:`NoGuidance` — the model as it is (conditional on ``y`` if it has labels).
* :class:`ClassifierGuidance` — a noise-aware classifier's gradient (Dhariwal & Nichol 2021, §4).
* :class:`ClassifierFreeGuidance` — conditional and unconditional predictions of one network
  (Ho & Salimans 2022).
* :class:`ScoreClassifierGuidance` — a time-dependent classifier's gradient added to a Score SDE
  model's score (Song et al. 2021, eq. 14); ``guidance(score_model_fn, sde, y) → score_fn(x, t)``.

A guidance object is called as ``guidance(model_fn, schedule, y, null_class) → eps_fn(x, t)``;
``DiffusionModule.sample(..., y=..., guidance=...)`` does this for its network.
"""

from .base import EpsFn, Guidance, ModelFn, NoGuidance, eps_to_score, schedule_positions, score_to_eps
from .classifier import (
    ClassifierGuidance,
    classifier_guidance,
    classifier_guided_eps,
    classifier_log_prob_grad,
    load_classifier_checkpoint,
    mean_shift_as_eps,
)
from .classifier_free import ClassifierFreeGuidance, classifier_free_eps
from .score import (
    ScoreClassifierGuidance,
    check_guidance_fits,
    classifier_guided_score,
    load_classifier_guidance,
    sde_classifier_guidance,
)

__all__ = [
    "EpsFn", "ModelFn", "Guidance", "NoGuidance", "ClassifierGuidance", "ClassifierFreeGuidance",
    "classifier_guidance", "classifier_guided_eps", "classifier_log_prob_grad", "classifier_free_eps",
    "mean_shift_as_eps", "load_classifier_checkpoint", "eps_to_score", "score_to_eps", "schedule_positions",
    "ScoreClassifierGuidance", "classifier_guided_score", "sde_classifier_guidance", "load_classifier_guidance",
    "check_guidance_fits",
]
