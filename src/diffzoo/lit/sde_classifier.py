"""``SDEClassifierModule``: the time-dependent classifier ``p_t(y | x(t))`` of Score SDE class-conditional sampling.

Song et al. 2021, §5 and App. I.1: a classifier of *perturbed* data is trained with the same
continuous-time forward process as the score model it will guide — ``t ~ U(ε, 1)``,
``x(t) ~ p_0t(x(t) | x(0)) = N(α(t) x(0), σ(t)² I)`` (the SDE's ``marginal_prob``; eq. 29 for VP,
eq. 31 for VE) — with the cross-entropy of the labels. Its gradient ``∇_x log p_t(y | x)`` is then
added to the unconditional score (eq. 14; :mod:`diffzoo.guidance.score`).

The classifier sees what the score network of :class:`~diffzoo.lit.score.ScoreModule` sees: data
in the model's coordinates (``data_transform``: ``[−1, 1]`` or ``[0, 1]`` for VE), and the time as
``time_scale · t`` (Score SDE feeds ``999 t`` to its continuous-time networks, ``models/utils.py``;
for the VE SDE, ``t`` is affine in ``log σ(t)``). Accuracy is logged per range of ``t``
(``train/acc_t0.00-0.25`` …): near-perfect at small ``t``, chance at ``t = 1``.

The discrete-time counterpart (DDPM schedules, ADM) is :class:`~diffzoo.lit.classifier.NoisyClassifierModule`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..utils.random import randn
from ..utils.tensors import bcast
from ..parameterization.data_scaling import DataScaling
from .classifier import TimeBucketedClassifier

__all__ = ["SDEClassifierModule", "t_ranges"]


def t_ranges(eps: float, T: float, n: int) -> list[tuple[float, float]]:
    """``n`` contiguous ranges ``[lo, hi]`` of continuous time covering ``[eps, T]``, edges rounded to
    two decimals for the metric names (e.g. eps=1e-5, T=1, n=4 → (0.0, 0.25), …, (0.75, 1.0))."""
    if not 1 <= n <= 100:
        raise ConfigError(f"model.t_buckets must be in [1, 100], got {n}")
    edges = [round(eps + (T - eps) * i / n, 2) for i in range(n + 1)]
    edges[0], edges[-1] = min(edges[0], eps), max(edges[-1], T)
    return list(zip(edges[:-1], edges[1:]))


class SDEClassifierModule(TimeBucketedClassifier):
    """A classifier of data perturbed by an SDE, as a LightningModule.

    Args:
        net: ``net(x_t, time_scale · t) → logits [B, K]`` (e.g. :class:`~diffzoo.networks.NoisyClassifier`).
        schedule: the :class:`~diffzoo.schedules.sde.SDE` of the score model it will guide.
        optimizer: ``optimizer(params)`` (``_partial_``).
        lr_scheduler: optional ``lr_scheduler(optimizer)`` stepped every step.
        data_shape: shape of one image ``(C, H, W)``.
        seed: base seed (training noise of step k on rank r is seeded by ``(seed, r, k)``).
        t_buckets: number of t ranges accuracy is logged for.
        eps: smallest training time (``t ~ U(eps, T)``; Score SDE trains its models with ``1e-5``).
        time_scale: the factor ``c`` of the time input ``c · t`` — the score model's
            ``parameterization.time_scale`` (999 in Score SDE's continuous-time models).
        data_transform: the score model's ``model.data_transform`` (``none``: data in ``[−1, 1]``;
            ``unit``: ``(x + 1)/2``, the VE models' scaling).
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        t_buckets: int = 4,
        eps: float = 1e-5,
        time_scale: float = 999.0,
        data_transform: str = "none",
    ):
        super().__init__()
        if not hasattr(schedule, "marginal_prob"):
            raise ConfigError(f"model=sde_classifier needs an SDE (schedule=vpsde | subvpsde | vesde), got "
                              f"{type(schedule).__name__}; a discrete schedule trains with model=classifier")
        self.scaling = DataScaling(data_transform)
        if not 0 < eps < schedule.T:
            raise ConfigError(f"model.eps must lie in (0, {schedule.T}), got {eps}")
        if not time_scale > 0:
            raise ConfigError(f"model.time_scale must be > 0, got {time_scale}")
        self._set_parts(net, schedule, optimizer, lr_scheduler, data_shape, seed)
        self.eps, self.time_scale, self.data_transform = float(eps), float(time_scale), data_transform
        self.buckets = t_ranges(self.eps, float(schedule.T), int(t_buckets))

    # ------------------------------------------------------------------ the model
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data in ``[−1, 1]`` → the score model's coordinates (identity, or ``(x + 1)/2``)."""
        return self.scaling.to_model(x)

    def classify_t(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` of ``x_t`` ``[B, …]`` (model coordinates) at continuous times ``t`` float ``[B]``."""
        return self.net(x_t, (self.time_scale * t).to(x_t.dtype))

    classify_noised = classify_t

    def noised(self, x0: torch.Tensor, t: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """``x(t) = α(t) x(0) + σ(t) z`` (the SDE's ``marginal_prob``) of data ``x0`` in ``[−1, 1]``, in the
        model's coordinates, at ``t`` (default ``t ~ U(eps, T)``, Score SDE ``losses.py``) → ``(x_t, t)``."""
        x0 = self.to_model(x0)
        if t is None:
            u = torch.rand(x0.shape[0], generator=generator).to(x0.device) if generator is not None else \
                torch.rand(x0.shape[0], device=x0.device)
            t = self.eps + (self.schedule.T - self.eps) * u
        marginal = self.schedule.marginal_prob(x0, t)
        z = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        return marginal.mean.to(x0.dtype) + bcast(marginal.std, x0) * z, t

    def bucket_name(self, lo, hi) -> str:
        return f"t{lo:.2f}-{hi:.2f}"

    def draw_t(self, lo, hi, n: int, generator: torch.Generator | None) -> torch.Tensor:
        lo = max(lo, self.eps)
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    def preview_times(self, n: int) -> torch.Tensor:
        return torch.linspace(self.eps, self.schedule.T, n)

    def to_data(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.scaling.from_model(x_t)
