"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance").

One network is trained both conditionally and unconditionally: the label is replaced by the null
class ∅ with probability ``p_uncond`` (``model.cond_drop_prob``; Algorithm 1). At sampling time

    ε̃(z_t, c) = (1 + w) · ε_θ(z_t, c) − w · ε_θ(z_t, ∅)                (CFG eq. 6, Algorithm 2)

which is the ε of the (unnormalised) density ``p(z|c)^{1+w} / p(z)^w`` — in score terms
``∇ log p(z|c) + w·(∇ log p(z|c) − ∇ log p(z))``, classifier guidance with the implicit
classifier ``p(c|z) ∝ p(z|c)/p(z)`` at scale w (CFG §3.2). ``w = 0`` is the conditional model.
GLIDE and Stable Diffusion write it ``ε_∅ + s·(ε_c − ε_∅)`` with ``s = 1 + w``.

The two predictions come from ONE forward pass over ``[x; x]`` with conditions ``[c; ∅]`` (as
GLIDE's sampling code does): one network evaluation of twice the batch per step. Extra output
channels (a learned variance) are taken from the conditional half. The combination is part of the
model function: an x̂₀ transform (clipping, Imagen's thresholding) applies to the *guided* x̂₀, as
GLIDE's ``model_fn`` runs before ``p_mean_variance`` clips.

Only a model trained with its condition dropped has a meaningful ∅: wrapping a denoiser without
``null_cond`` (``model.cond_drop_prob = 0``) is an error.
"""

from __future__ import annotations

import torch

from ..denoisers import Denoiser, DenoiserWrapper, Prediction, X0Transformed
from ..errors import ConfigError
from .base import Guidance, check_labels

__all__ = ["ClassifierFreeGuidance", "ClassifierFreeGuided"]


class ClassifierFreeGuidance(Guidance):
    """Classifier-free guidance as a denoiser wrapper (Ho & Salimans 2022, Algorithm 2).

    Args:
        scale: the guidance weight w ≥ 0 of CFG eq. 6 (0 = the conditional model; the paper's
            best FID is at w = 0.1 on ImageNet 64 and 0.3 on 128; larger w trades diversity for
            fidelity).
    """

    name = "cfg"

    def __init__(self, scale: float = 1.0):
        super().__init__()
        if float(scale) < 0:
            raise ValueError(f"guidance.scale (CFG w) must be >= 0, got {scale}")
        self.scale = float(scale)

    def wrap(self, denoiser: Denoiser) -> Denoiser:
        if denoiser.null_cond is None:
            raise ConfigError("guidance=cfg needs a model trained with its condition dropped (model.cond_drop_prob > 0, "
                              "experiment=cfg_*): this model never learned the unconditional prediction of its null class")
        return ClassifierFreeGuided(denoiser, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ClassifierFreeGuided(DenoiserWrapper):
    """``inner`` guided by CFG eq. 6 at weight ``scale``."""

    def __init__(self, inner: Denoiser, scale: float):
        super().__init__(inner)
        self.scale = float(scale)

    def predict(self, x: torch.Tensor, t, **cond) -> Prediction:
        if "y" in self.inner.null_cond:
            labels = check_labels(cond.get("y"), x.shape[0], "classifier-free guidance").to(x.device)
            cond = {**cond, "y": labels}
        if self.scale == 0:  # (1 + 0)·ε(x, c) − 0·ε(x, ∅): the conditional model alone
            return self.inner.predict(x, t, **cond)
        B = x.shape[0]
        both = {k: _doubled(v, self.inner.null_cond.get(k, _SAME), B) for k, v in cond.items()}
        t2 = t if isinstance(t, (int, float)) else torch.cat([torch.as_tensor(t).expand(B)] * 2)
        out = self.inner.predict(torch.cat([x, x]), t2, **both)
        eps = (1 + self.scale) * out.eps[:B] - self.scale * out.eps[B:]  # CFG eq. 6
        extra = out.extra[:B] if out.extra is not None else None
        shift = out.mean_shift[:B] if out.mean_shift is not None else None
        return Prediction(self.process.x0_from_eps(x, t, eps), eps, t, self.process, extra, shift)

    __call__ = predict

    def with_x0_transform(self, transform) -> Denoiser:
        return X0Transformed(self, transform)


_SAME = object()  # a condition without a null value: both halves get the same one


def _doubled(value, null, batch: int):
    """A condition for the batch ``[x; x]``: ``[c; ∅]`` (or ``[c; c]`` without a null value). Tensors are
    concatenated, a caption list (``text``, a single caption repeated per sample) extended."""
    if isinstance(value, str):
        value = [value] * batch
    if isinstance(value, (list, tuple)):
        return list(value) + ([null] * len(value) if null is not _SAME else list(value))
    return torch.cat([value, torch.full_like(value, null) if null is not _SAME else value])
