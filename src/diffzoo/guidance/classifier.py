"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", §4; Song et al. 2021,
Score SDE §5, eq. 14) — one implementation for every sampler and forward process.

A classifier ``p_φ(y | x_t, t)`` trained on noised data steers a model towards class ``y`` with the
gradient ``g = ∇_{x_t} log p_φ(y | x_t)`` (the log-softmax at the target class, ADM
``classifier_sample.py::cond_fn``) scaled by ``s``. Two forms:

* **ε-shift** (ADM §4.2, eq. 14, Algorithm 2; guided-diffusion ``condition_score``): the score of
  ``p(x_t) p_φ(y | x_t)^s`` is ``∇ log p(x_t) + s·g`` (Score SDE eq. 14 at ``s = 1``), i.e.
  ``ε̂ ← ε̂ − σ(t) · s · g`` and x̂₀ recomputed from it. Every sampler takes it.
* **mean shift** (ADM §4.1, eq. 10, Algorithm 1; ``condition_mean``): the ancestral step draws
  ``x_{t−1} ~ N(μ + s·Σ·g, Σ)``; the guided prediction carries ``s·g`` as ``mean_shift`` and the
  ancestral sampler (``sampler=ddpm``, the only one with such a mean) adds ``Σ·mean_shift``.

Order with x̂₀ clipping, as guided-diffusion: ``p_mean_variance`` clips ``pred_xstart`` first; then
``condition_score`` rebuilds ε from the *clipped* x̂₀, shifts it and does not clip again, and
``condition_mean`` shifts the mean computed from the clipped x̂₀. Here a sampler's ``clip_x0``
lands below this wrapper (:meth:`~diffzoo.denoisers.DenoiserWrapper.with_x0_transform`), so the
shift is never clipped away.

The classifier is called at the time input the base model's network sees (its ``model_time``:
the training-schedule index of a DDPM model — also on a respaced chain or on the VP SDE of its β
table — and, through ``time_input``, ``time_scale · t`` for a Score SDE classifier).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..denoisers import Denoiser, DenoiserWrapper, Prediction
from .base import Guidance, check_labels

__all__ = ["FORMS", "ClassifierGuidance", "ClassifierGuided", "classifier_log_prob_grad"]

FORMS = ("eps", "mean")
GradFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def classifier_log_prob_grad(classifier: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇_x log p_φ(y | x_t, t)`` with ``log p_φ = log_softmax(classifier(x, t))[y]`` (ADM ``cond_fn``).

    ``x`` ``[B, …]``, ``t`` ``[B]`` the classifier's time input (cast to x's dtype), ``y`` int64 ``[B]``
    → ``[B, …]`` (``x``'s dtype). Runs under ``enable_grad``, so it works inside the samplers' ``no_grad``.
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        logits = classifier(x_in, t.to(device=x_in.device, dtype=x_in.dtype))
        log_probs = F.log_softmax(logits.float(), dim=-1)
        selected = log_probs[torch.arange(x.shape[0], device=x.device), y.to(x.device)]
        return torch.autograd.grad(selected.sum(), x_in)[0]


class ClassifierGuidance(Guidance):
    """Classifier guidance as a denoiser wrapper (module docstring).

    Args:
        classifier: ``classifier(x_t, τ) → logits [B, K]`` (e.g. :class:`~diffzoo.networks.NoisyClassifier`);
            or give ``grad_fn`` instead.
        scale: the gradient scale s (ADM uses 1.0 on ImageNet 64/256 conditional, 0.5 on 128,
            10.0 with an unconditional 256 model; Score SDE eq. 14 is s = 1).
        form: ``"eps"`` (Algorithm 2; any sampler) or ``"mean"`` (Algorithm 1; ``sampler=ddpm`` only).
        grad_fn: ``grad_fn(x, τ, y) → ∇_x log p(y | x_t)`` replacing the classifier (e.g. an exact one);
            ``τ`` ``[B]`` is the base model's time input (see the module docstring): int64 when it
            holds whole numbers (the steps of a discrete schedule, as the earlier ``grad_fn`` got them),
            else float64.
        time_input: ``τ ↦`` the classifier's time input (default: τ itself).

    The base model may be conditional (it is given ``y``) or unconditional (it is not).
    """

    name = "classifier"

    def __init__(self, classifier: nn.Module | None = None, scale: float = 1.0, form: Literal["eps", "mean"] = "eps",
                 grad_fn: GradFn | None = None, time_input: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"guidance.form must be one of {FORMS}, got {form!r}")
        if (classifier is None) == (grad_fn is None):
            raise ValueError("ClassifierGuidance needs exactly one of classifier (guidance.classifier_ckpt) or grad_fn")
        self.classifier = classifier
        self.grad_fn = grad_fn
        self.time_input = time_input
        self.scale, self.form = float(scale), form

    def log_prob_grad(self, x: torch.Tensor, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∇_x log p(y | x_t)`` ``[B, …]`` at the base model's time input ``τ`` ``[B]``."""
        if self.grad_fn is not None:
            return self.grad_fn(x, tau.long() if torch.equal(tau, tau.round()) else tau, y)
        return classifier_log_prob_grad(self.classifier, x, self.time_input(tau) if self.time_input else tau, y)

    def wrap(self, denoiser: Denoiser) -> Denoiser:
        return ClassifierGuided(denoiser, self)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, form={self.form!r}"


class ClassifierGuided(DenoiserWrapper):
    """``inner`` guided by a :class:`ClassifierGuidance` (the labels come as conditioning ``y``)."""

    def __init__(self, inner: Denoiser, guidance: ClassifierGuidance):
        super().__init__(inner)
        self.guidance = guidance

    @property
    def mean_shift_form(self) -> bool:
        return self.guidance.form == "mean" or self.inner.mean_shift_form

    @property
    def cond_keys(self) -> frozenset:
        return self.inner.cond_keys | {"y"}

    def _target(self, x: torch.Tensor, cond: dict):
        """The inner model's conditioning and the guidance target (here the labels ``y``)."""
        labels = check_labels(cond.get("y"), x.shape[0], "classifier guidance").to(x.device)
        return (cond if "y" in self.inner.cond_keys else {k: v for k, v in cond.items() if k != "y"}), labels

    def predict(self, x: torch.Tensor, t, **cond) -> Prediction:
        inner_cond, labels = self._target(x, cond)
        p = self.inner.predict(x, t, **inner_cond)
        s = self.guidance.scale
        if s == 0:
            return p
        tau = self.inner.model_time(t)
        tau = torch.full((x.shape[0],), float(tau), dtype=torch.float64, device=x.device) if isinstance(tau, float) \
            else torch.as_tensor(tau, device=x.device).to(torch.float64).expand(x.shape[0])
        grad = self.guidance.log_prob_grad(x, tau, labels).to(x.dtype)
        if self.guidance.form == "mean":
            shift = s * grad if p.mean_shift is None else p.mean_shift + s * grad
            return p._replace(mean_shift=shift)
        _, sigma = self.process._coefficients(t, x)
        return p.with_eps(x, p.eps - sigma * s * grad)  # ADM eq. 14: ε̂ − √(1 − ᾱ_t) s ∇ log p_φ(y | x_t)

    __call__ = predict
