"""Guidance from checkpoints: the Hydra target of ``guidance=classifier`` and the check that a
guidance method fits a model. Guidance itself (:mod:`diffzoo.guidance`) wraps denoisers and knows no
LightningModule; this is where modules meet it."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import CheckpointError, ConfigError
from ..guidance import FORMS, ClassifierGuidance, ScoreClassifierGuidance
from .build import load_module
from .score import ScoreModule
from .sde_classifier import SDEClassifierModule

__all__ = ["load_classifier_guidance", "load_clip_guidance", "sde_classifier_guidance", "check_guidance_fits"]


def sde_classifier_guidance(module: SDEClassifierModule, scale: float = 1.0) -> ScoreClassifierGuidance:
    """:class:`~diffzoo.guidance.ScoreClassifierGuidance` from a trained :class:`SDEClassifierModule`
    (its network frozen in eval mode, its time input, SDE and data scaling)."""
    return ScoreClassifierGuidance(module.net.eval().requires_grad_(False), scale=scale, time_scale=module.time_scale,
                                   sde=module.schedule, data_transform=module.data_transform)


def _load_guide(method: str, key: str, ckpt_path, form: str, how: str):
    """The module of a guiding network's checkpoint ``guidance.<key>`` and its path, after the checks
    every ``guidance=<method>`` shares (set, a valid form, an existing file); ``how`` says how to train one."""
    if ckpt_path in (None, "", "???"):
        raise ConfigError(f"guidance={method} needs guidance.{key}=PATH (a checkpoint of diffzoo-train {how})")
    if form not in FORMS:
        raise ConfigError(f"guidance.form={form!r} is not one of {list(FORMS)}")
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"guidance.{key}={str(path)!r} does not exist; train one with diffzoo-train {how}")
    return load_module(path), path


def load_classifier_guidance(classifier_ckpt: str, scale: float = 1.0, form: str = "eps") -> nn.Module:
    """The Hydra target of ``guidance=classifier``: guidance by the classifier of ``classifier_ckpt``.

    * a continuous-time classifier (``diffzoo-train experiment=sde_classifier_<data>``) →
      :class:`~diffzoo.guidance.ScoreClassifierGuidance` (``form`` must be ``eps``: Score SDE eq. 14);
    * a discrete-time one (``experiment=adm_classifier_<data>``) → :class:`~diffzoo.guidance.ClassifierGuidance`
      (ADM; ``form=mean`` needs ``sampler=ddpm``).
    """
    module, path = _load_guide("classifier", "classifier_ckpt", classifier_ckpt, form,
                               "experiment=adm_classifier_<data> (DDPM-family models) or sde_classifier_<data> (Score SDE)")
    if isinstance(module, SDEClassifierModule):
        if form != "eps":
            raise ConfigError("guidance.form=mean is ADM's ancestral mean shift; a Score SDE classifier guides the score "
                              "(Score SDE eq. 14): set guidance.form=eps")
        return sde_classifier_guidance(module, scale)
    if not hasattr(module, "classify"):
        raise CheckpointError(f"guidance.classifier_ckpt={str(path)!r} holds a {type(module).__name__}, not a noise-aware "
                              "classifier (experiment=adm_classifier_* or sde_classifier_*)")
    return ClassifierGuidance(module.net.eval().requires_grad_(False), scale=scale, form=form)


def load_clip_guidance(clip_ckpt: str, scale: float = 1.0, form: str = "mean") -> nn.Module:
    """The Hydra target of ``guidance=clip``: GLIDE's CLIP guidance (§3.3) by the noised CLIP of
    ``clip_ckpt`` (``diffzoo-train experiment=noised_clip_<data>``, trained on the guided model's schedule)."""
    from ..guidance.clip import CLIPGuidance
    from ..networks.noised_clip import NoisedCLIP

    module, path = _load_guide("clip", "clip_ckpt", clip_ckpt, form, "experiment=noised_clip_<data> (e.g. noised_clip_captioned_digits)")
    net = getattr(module, "net", None)
    if not isinstance(net, NoisedCLIP):
        raise CheckpointError(f"guidance.clip_ckpt={str(path)!r} holds a {type(module).__name__}, not a noised CLIP "
                              "(experiment=noised_clip_*); a CLIP trained on clean images cannot guide noisy steps")
    return CLIPGuidance(net, scale=scale, form=form)


def check_guidance_fits(guidance: nn.Module, module: nn.Module) -> None:
    """Raise :class:`~diffzoo.errors.ConfigError` unless ``guidance`` can steer ``module``: a Score SDE
    model (a score model on an SDE) takes :class:`ScoreClassifierGuidance` (trained on the same SDE,
    time input and data scaling) and no discrete-time classifier; a discrete-time model no
    continuous-time classifier."""
    score_model = isinstance(module, ScoreModule)
    if isinstance(guidance, ScoreClassifierGuidance):
        if not (score_model and hasattr(module.schedule, "prior_logp")):
            raise ConfigError(f"guidance.classifier_ckpt holds a continuous-time classifier (experiment=sde_classifier_*), "
                              f"which guides Score SDE models, not a {type(module).__name__} on "
                              f"{type(module.schedule).__name__}; use experiment=adm_classifier_<data> for this model")
        guidance.check_model(module.schedule, module.parameterization.time_scale, module.data_transform)
    elif score_model and isinstance(guidance, ClassifierGuidance):
        raise ConfigError("a score model is guided through its score: guidance=classifier with a continuous-time "
                          "classifier (diffzoo-train experiment=sde_classifier_<data>), not a discrete-time (ADM) one")
