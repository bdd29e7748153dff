"""``NoisyClassifierModule``: trains the noise-aware classifier ``p_φ(y | x_t, t)`` of classifier guidance.

Dhariwal & Nichol 2021, §4.1 and ``scripts/classifier_train.py``: draw ``t`` uniformly, noise the
clean batch with the diffusion model's forward process ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε``
(DDPM eq. 4) and minimise the cross-entropy of the labels. Accuracy is logged per range of t
(``train/acc_t0-249`` …, ``val/acc_t0-249`` …): it must fall from near-perfect at small t to chance
at t ≈ T, which is what makes the classifier's gradient useful for guidance at every step.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..objectives.base import uniform_timesteps
from ..schedules.discrete import DiscreteSchedule
from ..utils.random import derive_seed, randn
from .base import DiffzooModule

__all__ = ["NoisyClassifierModule", "TimeBucketedClassifier", "t_bucket_ranges"]


def t_bucket_ranges(T: int, n: int) -> list[tuple[int, int]]:
    """``n`` contiguous index ranges ``[lo, hi]`` covering ``0 … T−1`` (e.g. T=1000, n=4 →
    (0, 249), (250, 499), (500, 749), (750, 999))."""
    if not 1 <= n <= T:
        raise ValueError(f"model.t_buckets must be in [1, {T}] (the schedule's T), got {n}")
    edges = [round(i * T / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(n)]


class TimeBucketedClassifier(DiffzooModule):
    """What the noise-aware classifiers share: cross-entropy on noised batches and accuracy logged
    per range of t. A classifier is not a generative model: it takes a network and the forward
    process of the model it will guide (``PARTS``), no objective or sampler. Subclasses set
    ``buckets`` (``[(lo, hi), …]``) and implement ``noised(x0, t, generator) → (x_t, t)`` (the
    forward process at t, default t drawn uniformly), ``classify_noised(x_t, t) → logits [B, K]``,
    ``draw_t(lo, hi, n, generator)`` (t uniform in a range), ``preview_times(n)`` and
    ``bucket_name(lo, hi)``."""

    PARTS = ("net", "schedule", "optimizer", "lr_scheduler")
    buckets: list = []
    _preview: torch.Tensor | None = None

    def _set_parts(self, net: nn.Module, schedule: nn.Module, optimizer, lr_scheduler, data_shape, seed: int) -> None:
        """What every classifier module holds (see :class:`~diffzoo.lit.base.DiffzooModule`); no EMA,
        as ADM's and Score SDE's classifier training."""
        self.net = net
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.ema = None
        self.data_shape = tuple(data_shape) if data_shape is not None else (net.in_channels, net.image_size, net.image_size)
        self.seed = seed
        self._preview = None

    def bucket_name(self, lo, hi) -> str:
        return f"t{lo}-{hi}"

    def draw_t(self, lo, hi, n: int, generator: torch.Generator | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def noised(self, x0: torch.Tensor, t: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """``(x_t, t)``: data ``x0`` in ``[−1, 1]`` noised by the forward process at ``t`` (drawn when ``None``)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def classify_noised(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def preview_times(self, n: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def noised_logits(self, x0: torch.Tensor, t: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise ``x0`` at ``t`` (default: drawn over the whole range) and classify it → ``(logits [B, K], t [B])``."""
        x_t, t = self.noised(x0, t, generator)
        return self.classify_noised(x_t, t), t

    @torch.no_grad()
    def noised_preview(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """What the classifier sees, for the run's closing PNG: the last training images noised at ``n``
        evenly spaced times from the cleanest to the noisiest (``[n, C, H, W]`` in ``[−1, 1]``, clamped)."""
        x0 = self._preview if self._preview is not None else torch.zeros(1, *self.data_shape, device=self.device)
        x0 = x0[torch.arange(n, device=x0.device) % x0.shape[0]]
        x_t, _ = self.noised(x0, self.preview_times(n).to(x0.device), generator)
        return self.to_data(x_t).clamp(-1, 1)

    def to_data(self, x_t: torch.Tensor) -> torch.Tensor:
        """The classifier's input coordinates → data coordinates (identity unless overridden)."""
        return x_t

    def _log_bucket_accuracy(self, stage: str, logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        correct = (logits.argmax(-1) == y).float()
        for lo, hi in self.buckets:
            mask = (t >= lo) & (t <= hi)
            if bool(mask.any()):
                self.log(f"{stage}/acc_{self.bucket_name(lo, hi)}", correct[mask].mean(), on_step=stage == "train",
                         on_epoch=stage != "train", batch_size=int(mask.sum()))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0, y = batch["x"], self._labels(batch)
        logits, t = self.noised_logits(x0)
        loss = F.cross_entropy(logits, y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        self.log("train/acc", (logits.argmax(-1) == y).float().mean(), on_step=True, on_epoch=False, batch_size=x0.shape[0])
        self._log_bucket_accuracy("train", logits.detach(), y, t)
        self._preview = x0[:8].detach()
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Held-out accuracy per t range, with noise seeded by ``(seed, "val", batch_idx)``."""
        x0, y = batch["x"], self._labels(batch)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "val", batch_idx))
        logits, t = self.noised_logits(x0, generator=gen)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=x0.shape[0])
        self._log_bucket_accuracy("val", logits, y, t)

    @torch.no_grad()
    def accuracy_by_t(self, x0: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, float]:
        """Accuracy on ``x0`` ``[N, …]`` / ``y`` ``[N]`` noised at t drawn uniformly inside every t range
        → ``{bucket_name: acc, …}`` (each range sees all N samples)."""
        out = {}
        for lo, hi in self.buckets:
            logits, _ = self.noised_logits(x0, self.draw_t(lo, hi, x0.shape[0], generator).to(x0.device), generator)
            out[self.bucket_name(lo, hi)] = float((logits.argmax(-1) == y).float().mean())
        return out


class NoisyClassifierModule(TimeBucketedClassifier):
    """A classifier of noised data as a LightningModule.

    Args:
        net: ``net(x_t, t) → logits [B, K]`` (e.g. :class:`~diffzoo.networks.NoisyClassifier`).
        schedule: the forward process of the diffusion model it will guide (same β table, same T).
        optimizer: ``optimizer(params)`` (``_partial_``; ADM: AdamW lr 3e-4, weight decay 0.05).
        lr_scheduler: optional ``lr_scheduler(optimizer)`` stepped every step.
        data_shape: shape of one image ``(C, H, W)``.
        seed: base seed; the noise of step k on rank r is seeded by ``(seed, r, k)`` (exact resume).
        t_buckets: number of t ranges accuracy is logged for.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: DiscreteSchedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        t_buckets: int = 4,
    ):
        super().__init__()
        self._set_parts(net, schedule, optimizer, lr_scheduler, data_shape, seed)
        self.buckets = t_bucket_ranges(schedule.T, int(t_buckets))

    # ------------------------------------------------------------------ the model
    def classify(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` for noised ``x_t`` ``[B, C, H, W]`` at int64 step indices ``t`` ``[B]``."""
        return self.net(x_t, self.schedule.timesteps.to(t.device)[t].to(x_t.dtype))

    classify_noised = classify

    def noised(self, x0: torch.Tensor, t: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """``x_t ~ q(x_t | x_0)`` (DDPM eq. 4) at int64 ``t`` (default ``t ~ U{0, …, T−1}``) → ``(x_t, t)``."""
        if t is None:
            t = uniform_timesteps(self.schedule.T, x0.shape[0], x0.device) if generator is None else \
                torch.randint(0, self.schedule.T, (x0.shape[0],), generator=generator).to(x0.device)
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        return self.schedule.q_sample(x0, t, noise), t

    def draw_t(self, lo, hi, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randint(lo, hi + 1, (n,), generator=generator)

    def preview_times(self, n: int) -> torch.Tensor:
        return torch.linspace(0, self.schedule.T - 1, n).round().long()
