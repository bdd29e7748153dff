"""CLIP guidance (GLIDE, Nichol et al. 2021, §3.3 eq. 3; glide-text2im ``clip/model_creation.py::cond_fn``).

A CLIP trained on noised images (:class:`~diffzoo.networks.noised_clip.NoisedCLIP`) steers sampling
towards a caption ``c`` with the gradient of the scaled similarity of its embeddings,

    g = ∇_{x_t} exp(t_CLIP) · ⟨f(x_t, t), g(c)⟩            (GLIDE eq. 3, the released cond_fn)

used exactly where classifier guidance uses ``∇ log p(y | x_t)`` — GLIDE: "we perform classifier
guidance with a CLIP model" — in the mean form (``x_{t−1} ~ N(μ + s·Σ·g, Σ)``, the released sampler)
or the ε form. The caption comes as the conditioning ``text`` the text model takes as well; the
mechanics (the form, the time input, the order with clipping) are :mod:`diffzoo.guidance.classifier`'s.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from ..denoisers import Denoiser
from .classifier import ClassifierGuidance, ClassifierGuided

__all__ = ["CLIPGuidance", "CLIPGuided", "clip_similarity_grad"]


def clip_similarity_grad(clip: nn.Module, x: torch.Tensor, t: torch.Tensor, text: Sequence[str]) -> torch.Tensor:
    """``∇_x exp(t_CLIP)·⟨z_i(x, t), z_t(text)⟩`` ``[B, …]`` (GLIDE eq. 3). ``x`` ``[B, C, H, W]``, ``t``
    ``[B]`` the base model's time input, ``text`` ``B`` captions. Runs under ``enable_grad``."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        z_t = clip.encode_text(list(text)).embedding.detach()
        z_i = clip.encode_image(x_in, t.to(device=x_in.device, dtype=torch.float32))
        score = clip.logit_scale.detach() * (z_i * z_t).sum()
        return torch.autograd.grad(score, x_in)[0]


class CLIPGuidance(ClassifierGuidance):
    """CLIP guidance as a denoiser wrapper (module docstring).

    Args:
        clip: a noised CLIP (``encode_image(x_t, t)``, ``encode_text(captions)``, ``logit_scale``).
        scale: the guidance scale s (GLIDE Table 1 used 2.0 at 256×256).
        form: ``"mean"`` (GLIDE's sampler; ``sampler=ddpm`` only) or ``"eps"`` (any sampler).
    """

    name = "clip"

    def __init__(self, clip: nn.Module, scale: float = 1.0, form: Literal["eps", "mean"] = "mean"):
        clip = clip.eval().requires_grad_(False)
        super().__init__(grad_fn=lambda x, tau, text: clip_similarity_grad(clip, x, tau.to(torch.float32), text),
                         scale=scale, form=form)
        self.clip = clip

    def wrap(self, denoiser: Denoiser) -> Denoiser:
        return CLIPGuided(denoiser, self)


class CLIPGuided(ClassifierGuided):
    """``inner`` guided towards its conditioning ``text`` by a :class:`CLIPGuidance`."""

    @property
    def cond_keys(self) -> frozenset:
        return self.inner.cond_keys | {"text"}

    def _target(self, x: torch.Tensor, cond: dict):
        text = cond.get("text")
        if text is None:
            raise ValueError("CLIP guidance needs captions: give text=[B captions] (diffzoo-sample prompt=...)")
        captions = [text] * x.shape[0] if isinstance(text, str) else list(text)
        if len(captions) != x.shape[0]:
            raise ValueError(f"CLIP guidance: got {len(captions)} captions for a batch of {x.shape[0]}")
        inner_cond = cond if "text" in self.inner.cond_keys else {k: v for k, v in cond.items() if k != "text"}
        return inner_cond, captions
