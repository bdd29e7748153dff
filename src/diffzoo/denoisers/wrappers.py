"""Denoiser → denoiser wrappers: the base of guidance, x̂₀ transforms and bound conditions.

A wrapper holds an ``inner`` denoiser and changes what :meth:`predict` returns; it keeps the inner
denoiser's process, time input and conditioning. Three operations rebuild a chain of wrappers:

* :meth:`DenoiserWrapper.retimed` re-times the base denoiser and keeps every wrapper on top;
* :meth:`DenoiserWrapper.with_x0_transform` puts an x̂₀ transform *below* the wrapper by default —
  where guided-diffusion clips x̂₀ before classifier guidance shifts it (``condition_score`` /
  ``condition_mean`` act on the clipped ``pred_xstart``); a wrapper that is part of the model
  function (classifier-free guidance: GLIDE combines the two ε before ``p_mean_variance`` clips)
  overrides it to put the transform on top;
* :meth:`DenoiserWrapper.bind` fixes conditioning on top of everything.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from .base import Denoiser, Prediction

__all__ = ["DenoiserWrapper", "X0Transformed", "Bound"]


class DenoiserWrapper(Denoiser):
    """A denoiser that wraps ``inner`` (module docstring). Subclasses implement :meth:`predict`."""

    def __init__(self, inner: Denoiser):  # noqa: D107 - no base __init__: everything is the inner's
        self.inner = inner

    # the inner denoiser's identity
    @property
    def process(self):
        return self.inner.process

    @property
    def prediction(self) -> str:
        return self.inner.prediction

    @property
    def cond_keys(self) -> frozenset:
        return self.inner.cond_keys

    @property
    def null_cond(self):
        return self.inner.null_cond

    @property
    def data_range(self) -> tuple[float, float]:
        return self.inner.data_range

    @property
    def to_data(self) -> Callable:
        return self.inner.to_data

    @property
    def from_data(self) -> Callable:
        return self.inner.from_data

    @property
    def mean_shift_form(self) -> bool:
        return self.inner.mean_shift_form

    def model_time(self, t):
        return self.inner.model_time(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    def predict(self, x: torch.Tensor, t, **cond) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    __call__ = predict

    def replace_inner(self, inner: Denoiser) -> "DenoiserWrapper":
        """A copy of this wrapper around another inner denoiser."""
        new = copy.copy(self)
        new.inner = inner
        return new

    def retimed(self, process, t_map: Callable) -> Denoiser:
        return self.replace_inner(self.inner.retimed(process, t_map))

    def with_x0_transform(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> Denoiser:
        return self.replace_inner(self.inner.with_x0_transform(transform))


class X0Transformed(DenoiserWrapper):
    """x̂₀ passed through ``transform`` (e.g. clipping to the data range) and ε̂ recomputed from it,
    ``ε̂ = (x − α x̂₀)/σ`` (improved-diffusion's ``ddim_sample`` and ``p_mean_variance`` with
    ``clip_denoised``). A further transform is applied after this one."""

    def __init__(self, inner: Denoiser, transform: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__(inner)
        self.transform = transform

    def predict(self, x: torch.Tensor, t, **cond) -> Prediction:
        p = self.inner.predict(x, t, **cond)
        return p.with_x0(x, self.transform(p.x0))

    __call__ = predict

    def with_x0_transform(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> Denoiser:
        return X0Transformed(self, transform)


class Bound(DenoiserWrapper):
    """The inner denoiser with conditioning fixed: ``predict(x, t) = inner.predict(x, t, **cond)``."""

    def __init__(self, inner: Denoiser, cond: dict[str, Any]):
        super().__init__(inner)
        self.cond = dict(cond)

    def predict(self, x: torch.Tensor, t, **cond) -> Prediction:
        return self.inner.predict(x, t, **{**self.cond, **cond})

    __call__ = predict

    @property
    def cond_keys(self) -> frozenset:
        return self.inner.cond_keys - set(self.cond)
