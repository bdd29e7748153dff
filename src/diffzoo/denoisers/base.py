"""The one model-function contract: a :class:`Denoiser` answers x̂₀, ε, the score and v at any
noise level of its forward process (``docs/ARCHITECTURE.md``, "Denoiser core").

A denoiser wraps three things:

* a network function ``net_fn(x, τ, **cond) → [B, C(+C'), …]``, where ``τ`` ``[B]`` is the *model
  time* — what the network was trained to see (a DDPM U-Net: the index into its training schedule;
  a Score SDE network: the SDE time, which its parameterisation scales itself);
* its forward process (:class:`~diffzoo.schedules.process.GaussianProcess`), which owns α(t), σ(t)
  and every conversion between predictions;
* the prediction type of the first ``C`` output channels (:data:`PREDICTIONS`); further channels
  (iDDPM's learned variance) travel along as ``Prediction.extra``.

``predict(x, t, **cond)`` evaluates the network once and returns a :class:`Prediction` holding all
four views. ``t`` is the process's own time (a DDPM index, real-valued between steps; an SDE time;
an NCSN σ), a number (the whole batch at one time: the samplers' fast path) or a tensor ``[B]``.
Discrete-time models accept real-valued t: the network is evaluated at the real-valued index
(:meth:`~diffzoo.schedules.DiscreteSchedule.model_time`; sinusoidal time embeddings take any
real number) and α, σ are interpolated (:meth:`~diffzoo.schedules.DiscreteSchedule.alpha`).

Denoisers compose: guidance (:mod:`diffzoo.guidance`) and x̂₀ transforms
(:mod:`diffzoo.denoisers.transforms`) wrap a denoiser into a denoiser (:class:`DenoiserWrapper`,
below), and samplers (:mod:`diffzoo.samplers`) take the result.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, NamedTuple

import torch

from ..schedules.flow import x0_eps_from_flow

__all__ = ["PREDICTIONS", "Prediction", "Denoiser", "NetFn", "DenoiserWrapper", "X0Transformed", "Bound"]

# "flow": the velocity u = α'(t) x₀ + σ'(t) ε of rectified flow / flow matching (u = ε − x₀ on the
# rectified-flow process; Liu et al. 2022, eq. 1), read through schedules.flow.x0_eps_from_flow.
PREDICTIONS = ("eps", "x0", "v", "score", "flow")
NetFn = Callable[..., torch.Tensor]


class Prediction(NamedTuple):
    """One network evaluation at ``(x, t)`` in every view (all ``[B, C, …]`` like ``x``).

    ``x0``: x̂₀; ``eps``: ε̂ with ``x = α x̂₀ + σ ε̂``; ``extra``: output channels beyond ``C``
    (iDDPM's variance interpolation ``v``, Nichol & Dhariwal 2021, eq. 15) or ``None``;
    ``mean_shift``: a term ``g`` that the ancestral sampler adds to its mean as ``Σ·g`` (ADM's
    classifier guidance in the mean form, Dhariwal & Nichol 2021, Algorithm 1) or ``None``;
    ``t`` and ``process``: where it was evaluated, for :attr:`score` and :attr:`v`.
    """

    x0: torch.Tensor
    eps: torch.Tensor
    t: Any
    process: Any
    extra: torch.Tensor | None = None
    mean_shift: torch.Tensor | None = None
    native_score: torch.Tensor | None = None

    @property
    def score(self) -> torch.Tensor:
        """``∇_x log p_t(x) = −ε̂/σ(t)`` (the network's own score when it predicts one)."""
        if self.native_score is not None:
            return self.native_score
        return self.process.score_from_eps(self.eps, self.t, self.eps)

    @property
    def v(self) -> torch.Tensor:
        """``v = α ε̂ − σ x̂₀`` (Salimans & Ho 2022, §4)."""
        return self.process.v_from(self.x0, self.eps, self.t)

    def with_eps(self, x: torch.Tensor, eps: torch.Tensor) -> "Prediction":
        """The prediction with ε̂ replaced and x̂₀ made consistent with it (``x̂₀ = x/α − (σ/α) ε̂``)."""
        return self._replace(eps=eps, x0=self.process.x0_from_eps(x, self.t, eps), native_score=None)

    def with_x0(self, x: torch.Tensor, x0: torch.Tensor) -> "Prediction":
        """The prediction with x̂₀ replaced and ε̂ made consistent with it (``ε̂ = (x − α x̂₀)/σ``)."""
        return self._replace(x0=x0, eps=self.process.eps_from_x0(x, self.t, x0), native_score=None)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _is_number(t) -> bool:
    return isinstance(t, (int, float)) or (torch.is_tensor(t) and t.ndim == 0)


class Denoiser:
    """A network read through its forward process (module docstring).

    Args:
        net_fn: ``net_fn(x [B, C, …], τ [B] in x's dtype, **cond) → [B, C(+C'), …]``.
        process: the forward process (owns α, σ and the conversions).
        prediction: what the first ``C`` output channels are: one of :data:`PREDICTIONS`.
        model_time: ``t ↦ τ`` (process time → the network's time input); default
            ``process.model_time``.
        cond_keys: the conditioning keys the network takes (e.g. ``("y",)``); any other key given to
            :meth:`predict` is an error naming it.
        null_cond: the conditioning that means "no condition" for classifier-free guidance (e.g.
            ``{"y": null_class}``) when the network was trained with it dropped, else ``None``.
        data_range: ``(lo, hi)`` of clean data in the model's coordinates (what ``clip_x0`` clamps to).
        to_data: maps samples from the model's coordinates to data coordinates ``[−1, 1]``
            (identity by default; NCSN / VE models see ``[0, 1]``); ``from_data`` is its inverse.
        model_shape: the shape of one sample in the model's coordinates when it differs from the
            data's (a latent diffusion model's ``z`` ``(C_z, H/f, W/f)``, LDM §3); ``None``: the same.
    """

    mean_shift_form = False  # true for ADM's mean-form classifier guidance (only ancestral sampling takes it)

    def __init__(self, net_fn: NetFn, process, prediction: str = "eps", *, model_time: Callable | None = None,
                 cond_keys=(), null_cond: Mapping[str, Any] | None = None, data_range: tuple[float, float] = (-1.0, 1.0),
                 to_data: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 from_data: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 model_shape: tuple[int, ...] | None = None):
        if prediction not in PREDICTIONS:
            raise ValueError(f"denoiser prediction must be one of {list(PREDICTIONS)}; got {prediction!r}")
        self.net_fn = net_fn
        self.process = process
        self.prediction = prediction
        self._model_time = model_time
        self.cond_keys = frozenset(cond_keys)
        self.null_cond = dict(null_cond) if null_cond is not None else None
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.to_data = to_data or _same
        self.from_data = from_data or _same
        self.model_shape = tuple(model_shape) if model_shape is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prediction={self.prediction!r}, process={type(self.process).__name__})"

    # ------------------------------------------------------------------ time
    def model_time(self, t):
        """The network's time input at process time ``t`` (a float for a number, else float64 ``[B]``)."""
        return self._model_time(t) if self._model_time is not None else self.process.model_time(t)

    def _net_time(self, t, x: torch.Tensor) -> torch.Tensor:
        tau = self.model_time(t)
        if _is_number(tau):
            return torch.full((x.shape[0],), float(tau), dtype=x.dtype, device=x.device)
        tau = torch.as_tensor(tau, device=x.device)
        return (tau.expand(x.shape[0]) if tau.ndim == 0 else tau).to(x.dtype)

    # ------------------------------------------------------------------ evaluation
    def _check_cond(self, cond: Mapping[str, Any]) -> dict:
        given = {k: v for k, v in cond.items() if v is not None}
        unknown = sorted(set(given) - self.cond_keys)
        if unknown:
            takes = f"it takes {sorted(self.cond_keys)}" if self.cond_keys else "it is unconditional"
            raise ValueError(f"this model takes no condition {unknown[0]!r} ({takes})")
        return given

    def predict(self, x: torch.Tensor, t, **cond) -> Prediction:
        """One network evaluation at ``x`` ``[B, C, …]``, process time ``t`` (number or ``[B]``)."""
        out = self.net_fn(x, self._net_time(t, x), **self._check_cond(cond))
        channels = x.shape[1]
        if out.shape[1] < channels:
            raise ValueError(f"network output has {out.shape[1]} channels; the data have {channels} (net.out_channels)")
        out = out.to(x.dtype)
        native, extra = out[:, :channels], (out[:, channels:] if out.shape[1] > channels else None)
        p = self.process
        if self.prediction == "eps":
            return Prediction(p.x0_from_eps(x, t, native), native, t, p, extra)
        if self.prediction == "x0":
            return Prediction(native, p.eps_from_x0(x, t, native), t, p, extra)
        if self.prediction == "v":
            x0, eps = p.from_v(x, t, native)
            return Prediction(x0, eps, t, p, extra)
        if self.prediction == "flow":
            x0, eps = x0_eps_from_flow(p, x, t, native)
            return Prediction(x0, eps, t, p, extra)
        return Prediction(p.x0_from_score(x, t, native), p.eps_from_score(x, t, native), t, p, extra, native_score=native)

    __call__ = predict

    def x0(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        """x̂₀ ``[B, C, …]``."""
        return self.predict(x, t, **cond).x0

    def eps(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        """ε̂ ``[B, C, …]``."""
        return self.predict(x, t, **cond).eps

    def score(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        """``∇_x log p_t(x)`` ``[B, C, …]``."""
        return self.predict(x, t, **cond).score

    def v(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        """``v = α ε̂ − σ x̂₀`` ``[B, C, …]``."""
        return self.predict(x, t, **cond).v

    # ------------------------------------------------------------------ composition
    def retimed(self, process, t_map: Callable) -> "Denoiser":
        """The same network read on another ``process`` whose time ``u`` corresponds to this one's
        ``t_map(u)`` (e.g. a DDPM model on the VP SDE its β table discretises, Score SDE App. B):
        the network is evaluated at ``model_time(t_map(u))`` and its output converted with the new
        process's α(u), σ(u)."""
        return Denoiser(self.net_fn, process, self.prediction, model_time=lambda u: self.model_time(t_map(u)),
                        cond_keys=self.cond_keys, null_cond=self.null_cond, data_range=self.data_range, to_data=self.to_data,
                        from_data=self.from_data, model_shape=self.model_shape)

    def with_x0_transform(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> "Denoiser":
        """This denoiser with x̂₀ passed through ``transform`` (clipping, thresholding) and ε̂ made
        consistent with it. Guidance wrappers place the transform where the reference code does."""
        return X0Transformed(self, transform)

    def bind(self, **cond) -> "Denoiser":
        """This denoiser with the conditioning ``cond`` (e.g. ``y=labels``) fixed; ``None`` values are dropped."""
        given = {k: v for k, v in cond.items() if v is not None}
        return Bound(self, given) if given else self


# ---------------------------------------------------------------------- denoiser → denoiser
# A wrapper holds an ``inner`` denoiser and changes what ``predict`` returns; it keeps the inner
# denoiser's process, time input and conditioning. Three operations rebuild a chain of wrappers:
#
# * ``retimed`` re-times the base denoiser and keeps every wrapper on top;
# * ``with_x0_transform`` puts an x̂₀ transform *below* the wrapper by default — where guided-diffusion
#   clips x̂₀ before classifier guidance shifts it (``condition_score`` / ``condition_mean`` act on the
#   clipped ``pred_xstart``); a wrapper that is part of the model function (classifier-free guidance:
#   GLIDE combines the two ε before ``p_mean_variance`` clips) overrides it to put the transform on top;
# * ``bind`` fixes conditioning on top of everything.


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
    def model_shape(self) -> tuple[int, ...] | None:
        return self.inner.model_shape

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


def _per_sample(value, batch: int, device):
    """A scalar condition (an int label, a 0-d tensor) as one value per sample ``[batch]``, so that
    ``bind(y=3)`` serves any batch size; a single caption ``str`` as a list of ``batch`` copies;
    any other value as it is."""
    if isinstance(value, str):
        return [value] * batch
    if (isinstance(value, (int, float)) and not isinstance(value, bool)) or (torch.is_tensor(value) and value.ndim == 0):
        return torch.as_tensor(value, device=device).expand(batch)
    return value


class Bound(DenoiserWrapper):
    """The inner denoiser with conditioning fixed: ``predict(x, t) = inner.predict(x, t, **cond)``.

    A fixed value wins over one a caller passes for the same key later: a guidance wrapped around
    ``base.bind(y=null)`` gets the target labels for its classifier while the model keeps the null label
    (classifier guidance of the unconditional branch of a class-conditional model)."""

    def __init__(self, inner: Denoiser, cond: dict[str, Any]):
        super().__init__(inner)
        self.cond = dict(cond)

    def predict(self, x: torch.Tensor, t, **cond) -> Prediction:
        fixed = {k: _per_sample(v, x.shape[0], x.device) for k, v in self.cond.items()}
        return self.inner.predict(x, t, **{**cond, **fixed})

    __call__ = predict

    @property
    def cond_keys(self) -> frozenset:
        return self.inner.cond_keys - set(self.cond)
