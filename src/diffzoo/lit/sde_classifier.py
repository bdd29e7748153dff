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
from ..utils.random import GeneratorLike, randn
from .classifier import TimeBucketedClassifier
from .score import DATA_TRANSFORMS

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
        objective, sampler: unused (the config slots of :data:`diffzoo.lit.build.PARTS`); must be ``None``.
        data_shape: shape of one image ``(C, H, W)``.
        seed: base seed (training noise of step k on rank r is seeded by ``(seed, r, k)``).
        t_buckets: number of t ranges accuracy is logged for.
        eps: smallest training time (``t ~ U(eps, T)``; Score SDE trains its models with ``1e-5``).
        time_scale: the factor ``c`` of the time input ``c · t`` — the score model's
            ``model.parameterization.time_scale`` (999 in Score SDE's continuous-time models).
        data_transform: the score model's ``model.data_transform`` (``none``: data in ``[−1, 1]``;
            ``unit``: ``(x + 1)/2``, the VE models' scaling).
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        objective: nn.Module | None = None,
        sampler: Callable | None = None,
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
        if data_transform not in DATA_TRANSFORMS:
            raise ConfigError(f"model.data_transform: unknown {data_transform!r}; allowed: {list(DATA_TRANSFORMS)}")
        if not 0 < eps < schedule.T:
            raise ConfigError(f"model.eps must lie in (0, {schedule.T}), got {eps}")
        if not time_scale > 0:
            raise ConfigError(f"model.time_scale must be > 0, got {time_scale}")
        self._set_parts(net, schedule, optimizer, lr_scheduler, data_shape, seed, objective, sampler)
        self.eps, self.time_scale, self.data_transform = float(eps), float(time_scale), data_transform
        self.buckets = t_ranges(self.eps, float(schedule.T), int(t_buckets))

    # ------------------------------------------------------------------ the model
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data in ``[−1, 1]`` → the score model's coordinates (identity, or ``(x + 1)/2``)."""
        return (x + 1) / 2 if self.data_transform == "unit" else x

    def classify_t(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` of ``x_t`` ``[B, …]`` (model coordinates) at continuous times ``t`` float ``[B]``."""
        return self.net(x_t, (self.time_scale * t).to(x_t.dtype))

    def noised_logits(self, x0: torch.Tensor, t: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Perturb data ``x0`` ``[B, …]`` (in ``[−1, 1]``) to ``x(t) = α(t) x(0) + σ(t) z`` (the SDE's
        ``marginal_prob``) at ``t`` (default ``t ~ U(eps, T)``) and classify it → ``(logits [B, K], t [B])``."""
        x0 = self.to_model(x0)
        if t is None:
            u = torch.rand(x0.shape[0], generator=generator).to(x0.device) if generator is not None else \
                torch.rand(x0.shape[0], device=x0.device)
            t = self.eps + (self.schedule.T - self.eps) * u  # Score SDE losses.py: t ~ U(eps, T)
        marginal = self.schedule.marginal_prob(x0, t)
        z = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        std = marginal.std.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        return self.classify_t(marginal.mean.to(x0.dtype) + std * z, t), t

    def bucket_name(self, lo, hi) -> str:
        return f"t{lo:.2f}-{hi:.2f}"

    def draw_t(self, lo, hi, n: int, generator: torch.Generator | None) -> torch.Tensor:
        lo = max(lo, self.eps)
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    # ------------------------------------------------------------------ what train.py draws at the end
    @torch.no_grad()
    def sample(self, n: int, generator: GeneratorLike = None, callback: Callable | None = None, **_) -> torch.Tensor:
        """Not a generative model: returns the classifier's *inputs* for the final PNG — the last
        training images perturbed at ``n`` evenly spaced times from ``eps`` to ``T`` (``[n, C, H, W]``,
        model coordinates mapped back to ``[−1, 1]`` and clamped)."""
        x0 = self._preview if self._preview is not None else torch.zeros(1, *self.data_shape, device=self.device)
        x0 = self.to_model(x0[torch.arange(n, device=x0.device) % x0.shape[0]])
        t = torch.linspace(self.eps, self.schedule.T, n, device=x0.device)
        marginal = self.schedule.marginal_prob(x0, t)
        gen = generator if isinstance(generator, torch.Generator) else None
        std = marginal.std.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        x_t = marginal.mean.to(x0.dtype) + std * randn(x0.shape, gen, device=x0.device, dtype=x0.dtype)
        if callback is not None:
            callback({"nfe": 0})
        return (2 * x_t - 1 if self.data_transform == "unit" else x_t).clamp(-1, 1)
