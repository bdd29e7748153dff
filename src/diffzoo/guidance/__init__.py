"""Guidance: wrappers that turn a denoiser into a denoiser (samplers never branch on them).

* :class:`NoGuidance` — the model as it is (conditional on ``y`` if it has labels).
* :class:`ClassifierGuidance` — a noise-aware classifier's gradient (Dhariwal & Nichol 2021, §4), in
  the ε form (any sampler) or the mean form (ancestral sampling).
* :class:`ClassifierFreeGuidance` — conditional and unconditional predictions of one network
  (Ho & Salimans 2022).
* :class:`~diffzoo.guidance.clip.CLIPGuidance` — a noised CLIP's similarity gradient towards the
  caption (GLIDE §3.3), in either form of classifier guidance.
* :class:`ScoreClassifierGuidance` — classifier guidance with a Score SDE time-dependent classifier
  (Song et al. 2021, eq. 14).

``guidance.wrap(denoiser)`` gives the guided denoiser; bind the labels with ``.bind(y=labels)``.
Guidance knows no LightningModule: loading a classifier from a checkpoint is
:func:`diffzoo.lit.load_classifier_guidance`.
"""

from .base import Guidance, ModelFn, NoGuidance, check_labels, model_fn_denoiser
from .classifier import FORMS, ClassifierGuidance, ClassifierGuided, classifier_log_prob_grad
from .classifier_free import ClassifierFreeGuidance, ClassifierFreeGuided
from .score import ScoreClassifierGuidance, sde_constants

__all__ = [
    "Guidance", "ModelFn", "NoGuidance", "check_labels", "model_fn_denoiser", "FORMS", "ClassifierGuidance",
    "ClassifierGuided", "classifier_log_prob_grad", "ClassifierFreeGuidance", "ClassifierFreeGuided",
    "ScoreClassifierGuidance", "sde_constants",
]
