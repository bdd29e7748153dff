"""``DiffusionModule``: network + schedule + objective + sampler, trained by Lightning."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..denoisers import Denoiser
from ..errors import ConfigError
from ..schedules.discrete import DiscreteSchedule
from .base import GenerativeModule

__all__ = ["DiffusionModule"]


class DiffusionModule(GenerativeModule):
    """A discrete-time diffusion model (DDPM family) as a LightningModule.

    Args:
        net: ``net(x_t, t, y=None) → ε`` (or ``x_0`` / ``v``: the objective's ``prediction``; plain
            ``nn.Module``; see ``diffzoo.networks``).
        schedule: the forward process (:class:`DiscreteSchedule`).
        objective: ``objective(net, schedule, x0, **cond) → ObjectiveOutput``. Its ``prediction``
            (``eps``, ``x0`` or ``v``; :class:`~diffzoo.objectives.SimpleLoss`) is what the network
            predicts, read here by :meth:`denoiser`; an objective without one (L_hybrid, L_vlb, and
            every checkpoint written before the option existed) trains ε.
        sampler: a :class:`~diffzoo.samplers.SamplerSpec` (or the ``_partial_`` sampler config of a
            checkpoint written before it existed).
        optimizer: ``optimizer(params) → torch.optim.Optimizer`` (``_partial_``).
        lr_scheduler: optional ``lr_scheduler(optimizer) → LRScheduler`` stepped every step.
        ema_decay, ema_warmup: the weight EMA kept on every rank (see :class:`diffzoo.optim.ema.EMA`);
            ``ema_decay=None`` keeps none (sampling then uses the raw weights).
        data_shape: shape of one sample, e.g. ``(1, 8, 8)`` or ``(2,)``.
        seed: base seed; training noise is seeded per step, rank and micro-batch
            (:meth:`~diffzoo.lit.base.DiffzooModule.step_seed`), so a resumed run draws exactly the
            noise an uninterrupted one would.
        conditional: pass the batch's class label ``y`` to the network.
        cond_drop_prob: with ``conditional``, replace each training label by the network's null
            class with this probability (classifier-free guidance, Ho & Salimans 2022, Alg. 1);
            the draws are seeded like the training noise (stream ``"cond_drop"``).
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: DiscreteSchedule,
        objective: nn.Module,
        sampler,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        ema_decay: float | None = 0.9999,
        ema_warmup: bool = False,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        conditional: bool = False,
        cond_drop_prob: float = 0.0,
    ):
        super().__init__()
        self._set_parts(net, schedule, objective, optimizer, lr_scheduler, ema_decay, ema_warmup, data_shape, seed, conditional)
        self.cond_drop_prob = float(cond_drop_prob)
        self.prediction = getattr(objective, "prediction", "eps")  # the one source: the objective's target
        if self.prediction not in ("eps", "x0", "v"):
            raise ConfigError(f"objective.prediction must be one of ['eps', 'x0', 'v']; got {self.prediction!r}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"model.cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
        if self.cond_drop_prob > 0 and (not conditional or getattr(net, "null_class", None) is None):
            raise ValueError("model.cond_drop_prob > 0 needs model.conditional=true and a network with a null "
                             "class (net.num_classes set)")
        self._set_sampler(sampler)

    # ------------------------------------------------------------------ training
    def _cond(self, batch: dict) -> dict:
        if not self.conditional:
            return {}
        y = self._labels(batch)
        return {"y": self._drop_labels(y) if self.cond_drop_prob > 0 else y}

    def _drop_labels(self, y: torch.Tensor) -> torch.Tensor:
        """Replace each label by the null class with probability ``cond_drop_prob`` (CFG Alg. 1, line 3)."""
        gen = torch.Generator().manual_seed(self.step_seed("cond_drop"))
        drop = (torch.rand(y.shape[0], generator=gen) < self.cond_drop_prob).to(y.device)
        return y.masked_fill(drop, self.net.null_class)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        out = self.objective(self.net, self.schedule, x0, **self._cond(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The network (EMA weights by default) as a :class:`~diffzoo.denoisers.Denoiser` predicting
        :attr:`prediction` (ε, x₀ or v: the objective's target) on its schedule: at process time t (a
        real-valued step index) the network sees the index of the training schedule (:meth:`DiscreteSchedule.model_time`). A class-conditional model takes
        ``y``; one trained with label dropout has the null class as its ``null_cond`` (CFG)."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net

        def net_fn(x: torch.Tensor, tau: torch.Tensor, **cond) -> torch.Tensor:
            return net(x, tau, **cond)

        null = {"y": net.null_class} if self.conditional and self.cond_drop_prob > 0 else None
        return Denoiser(net_fn, self.schedule, self.prediction, cond_keys=("y",) if self.conditional else (), null_cond=null)
