"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", §4).

A classifier ``p_φ(y | x_t, t)`` trained on noised images steers a diffusion model towards class
``y`` with the gradient ``g = ∇_{x_t} log p_φ(y | x_t)`` (the log-softmax at the target class,
ADM ``classifier_sample.py::cond_fn``), scaled by ``s``. Two forms:

* **ε-shift** (ADM §4.2, eq. 14, Algorithm 2; "condition_score"): the score of
  ``p(x_t) p_φ(y | x_t)^s`` is ``∇ log p(x_t) + s·g``, i.e.

      ε̂(x_t) = ε_θ(x_t) − √(1 − ᾱ_t) · s · g.

  It changes only the model function, so it serves every ε-sampler (DDIM, ancestral, …).
* **mean shift** (ADM §4.1, eq. 10, Algorithm 1; "condition_mean"): the ancestral step draws
  ``x_{t−1} ~ N(μ + s·Σ·g, Σ)``. The DDPM mean is linear in ε,
  ``μ = (x_t − β_t/√(1 − ᾱ_t) · ε) / √α_t`` (DDPM eq. 11), so the shift is the ε-shift

      ε̂ = ε − (√α_t √(1 − ᾱ_t) / β_t) · s · Σ · g,

  with β_t, α_t of the schedule the ancestral sampler walks (respaced or not) and Σ the
  sampler's variance (fixed, or the learned one read from the network's extra channels). This
  keeps the sampler ignorant of guidance; it equals ADM's update exactly when the sampler does
  not clip x̂_0 (``sampler.clip_x0=false``). With clipping, the shift is applied to ε before
  x̂_0 is clipped (ADM adds it to the mean after clipping). Use it with ``sampler=ddpm`` only:
  a DDIM step's coefficients differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..parameterization.reverse import VARIANCE_KINDS, p_mean_variance, split_model_output
from ..schedules.discrete import DiscreteSchedule, extract
from .base import EpsFn, Guidance, ModelFn, check_labels, schedule_positions

__all__ = [
    "FORMS", "ClassifierGuidance", "classifier_guidance", "classifier_log_prob_grad", "classifier_guided_eps",
    "mean_shift_as_eps", "load_classifier_checkpoint",
]

FORMS = ("eps", "mean")
GradFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def classifier_log_prob_grad(classifier: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇_x log p_φ(y | x_t, t)`` with ``log p_φ = log_softmax(classifier(x, t))[y]`` (ADM ``cond_fn``).

    ``x`` ``[B, …]``, ``t`` int64 ``[B]`` original indices (fed to the classifier as float, like the
    diffusion network), ``y`` int64 ``[B]`` → ``[B, …]`` (``x``'s dtype). Runs under ``enable_grad``, so
    it works inside the samplers' ``no_grad``.
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        logits = classifier(x_in, t.to(x_in.dtype))
        log_probs = F.log_softmax(logits.float(), dim=-1)
        selected = log_probs[torch.arange(x.shape[0], device=x.device), y.to(x.device)]
        return torch.autograd.grad(selected.sum(), x_in)[0]


def classifier_guided_eps(eps: torch.Tensor, grad: torch.Tensor, schedule: DiscreteSchedule, pos: torch.Tensor,
                          scale: float) -> torch.Tensor:
    """ADM eq. 14 / Algorithm 2: ``ε̂ = ε − √(1 − ᾱ_t) · s · ∇ log p_φ(y | x_t)``.

    ``eps``, ``grad`` ``[B, C, …]``; ``pos`` int64 ``[B]`` indexes ``schedule`` → ``[B, C, …]``.
    """
    return eps - extract(schedule.sqrt_one_minus_alphas_cumprod, pos, eps) * scale * grad.to(eps.dtype)


def mean_shift_as_eps(eps: torch.Tensor, grad: torch.Tensor, schedule: DiscreteSchedule, x: torch.Tensor,
                      pos: torch.Tensor, scale: float, variance: str = "fixedlarge",
                      v: torch.Tensor | None = None) -> torch.Tensor:
    """The ε that moves the DDPM mean by ``s·Σ·g`` (ADM eq. 10 / Algorithm 1), see the module docstring.

    ``eps``, ``grad``, ``x`` ``[B, C, …]``; ``pos`` int64 ``[B]`` indexes ``schedule`` (the one the
    ancestral sampler walks); ``variance`` one of :data:`~diffzoo.parameterization.reverse.VARIANCE_KINDS`
    with ``v`` the raw variance output for ``"learned_range"``.
    """
    sigma2 = p_mean_variance(schedule, x, pos, eps, variance, v=v).variance  # Σ as the sampler uses it
    # dμ/dε = −β_t / (√α_t √(1 − ᾱ_t)) (DDPM eq. 11), so Δμ = s Σ g needs Δε = −(√α_t √(1 − ᾱ_t) / β_t) s Σ g.
    coef = extract(schedule.alphas.sqrt() * schedule.sqrt_one_minus_alphas_cumprod / schedule.betas, pos, eps)
    return eps - coef * scale * sigma2 * grad.to(eps.dtype)


class ClassifierGuidance(Guidance):
    """Classifier guidance as a denoiser wrapper (ADM §4, Algorithms 1 and 2).

    Args:
        classifier: ``classifier(x_t, t) → logits [B, K]`` (e.g. :class:`~diffzoo.networks.NoisyClassifier`);
            or give ``grad_fn`` instead.
        scale: the gradient scale s (ADM uses 1.0 on ImageNet 64/256 conditional, 0.5 on 128,
            10.0 with an unconditional 256 model).
        form: ``"eps"`` (Algorithm 2; any sampler) or ``"mean"`` (Algorithm 1; ancestral ``ddpm``).
        variance: the ancestral sampler's variance (``sampler.variance``), used by ``form="mean"``.
        grad_fn: ``grad_fn(x, t, y) → ∇_x log p(y | x_t)`` replacing the classifier (e.g. an exact one).

    The base model may be conditional (it is given ``y``) or unconditional (it ignores ``y``).
    """

    name = "classifier"  # in output folders and summaries

    def __init__(self, classifier: nn.Module | None = None, scale: float = 1.0,
                 form: Literal["eps", "mean"] = "eps", variance: str = "fixedlarge", grad_fn: GradFn | None = None):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"guidance.form must be one of {FORMS}, got {form!r}")
        if variance not in VARIANCE_KINDS:
            raise ValueError(f"guidance.variance must be one of {VARIANCE_KINDS}, got {variance!r}")
        if (classifier is None) == (grad_fn is None):
            raise ValueError("ClassifierGuidance needs exactly one of classifier (guidance.classifier_ckpt) or grad_fn")
        self.classifier = classifier
        self.grad_fn = grad_fn
        self.scale, self.form, self.variance = float(scale), form, variance

    def log_prob_grad(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∇_x log p(y | x_t)`` ``[B, …]`` from the classifier (or ``grad_fn``)."""
        if self.grad_fn is not None:
            return self.grad_fn(x, t, y)
        return classifier_log_prob_grad(self.classifier, x, t, y)

    def forward(self, model_fn: ModelFn, schedule: DiscreteSchedule, y: torch.Tensor | None,
                null_class: int | None = None) -> EpsFn:
        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            labels = check_labels(y, x.shape[0], "classifier guidance").to(x.device)
            out = model_fn(x, t, labels)
            if self.scale == 0:
                return out
            C = x.shape[1]
            pos = schedule_positions(schedule, t)
            grad = self.log_prob_grad(x, t, labels)
            if self.form == "eps":
                eps = classifier_guided_eps(out[:, :C], grad, schedule, pos, self.scale)
            else:
                e, v = split_model_output(out, C, self.variance)
                eps = mean_shift_as_eps(e, grad, schedule, x, pos, self.scale, self.variance, v)
            return torch.cat([eps.to(out.dtype), out[:, C:]], dim=1)

        return eps_fn

    def extra_repr(self) -> str:
        return f"scale={self.scale}, form={self.form!r}, variance={self.variance!r}"


def load_classifier_checkpoint(path) -> nn.Module:
    """The classifier network of a checkpoint written by ``diffzoo-train experiment=adm_classifier_*``
    (frozen, eval mode)."""
    from ..errors import CheckpointError
    from ..lit.build import load_module

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"guidance.classifier_ckpt={str(path)!r} does not exist; train one with "
                                "diffzoo-train experiment=adm_classifier_<data>")
    module = load_module(path)
    if not hasattr(module, "classify"):
        raise CheckpointError(f"guidance.classifier_ckpt={str(path)!r} holds a {type(module).__name__}, "
                              "not a noise-aware classifier (experiment=adm_classifier_*)")
    return module.net.eval().requires_grad_(False)


def classifier_guidance(classifier_ckpt: str, scale: float = 1.0, form: str = "eps",
                        variance: str | None = None) -> ClassifierGuidance:
    """:class:`ClassifierGuidance` with the classifier of ``classifier_ckpt`` (the Hydra target of
    ``guidance=classifier``); ``variance=None`` means ``"fixedlarge"``."""
    if classifier_ckpt in (None, "", "???"):
        raise ValueError("guidance=classifier needs guidance.classifier_ckpt=PATH (a checkpoint of "
                         "diffzoo-train experiment=adm_classifier_<data>)")
    return ClassifierGuidance(load_classifier_checkpoint(classifier_ckpt), scale=scale, form=form,
                              variance=variance or "fixedlarge")
