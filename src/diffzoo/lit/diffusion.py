"""``DiffusionModule``: network + schedule + objective + sampler, trained by Lightning."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..optim.ema import EMA
from ..schedules.discrete import DiscreteSchedule
from ..utils.random import GeneratorLike, randn
from .base import GenerativeModule

__all__ = ["DiffusionModule"]


class DiffusionModule(GenerativeModule):
    """A discrete-time diffusion model (DDPM family) as a LightningModule.

    Args:
        net: ``net(x_t, t, y=None) → ε`` (plain ``nn.Module``; see ``diffzoo.networks``).
        schedule: the forward process (:class:`DiscreteSchedule`).
        objective: ``objective(net, schedule, x0, **cond) → ObjectiveOutput``.
        sampler: a sampler function with its options bound (Hydra ``_partial_``); called as
            ``sampler(eps_fn, schedule, x_T, generator=…, callback=…, progress=…)``.
        optimizer: ``optimizer(params) → torch.optim.Optimizer`` (``_partial_``).
        lr_scheduler: optional ``lr_scheduler(optimizer) → LRScheduler`` stepped every step.
        ema_decay, ema_warmup: the weight EMA kept on every rank (see :class:`diffzoo.optim.ema.EMA`).
        data_shape: shape of one sample, e.g. ``(1, 8, 8)`` or ``(2,)``.
        seed: base seed; training noise of step k on rank r is seeded by ``(seed, r, k)``, so a
            resumed run draws exactly the noise an uninterrupted one would.
        conditional: pass the batch's class label ``y`` to the network.
        cond_drop_prob: with ``conditional``, replace each training label by the network's null
            class with this probability (classifier-free guidance, Ho & Salimans 2022, Alg. 1);
            the draws of step k on rank r are seeded by ``(seed, "cond_drop", r, k)``.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: DiscreteSchedule,
        objective: nn.Module,
        sampler: Callable,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        ema_decay: float = 0.9999,
        ema_warmup: bool = False,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        conditional: bool = False,
        cond_drop_prob: float = 0.0,
    ):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.objective = objective
        self.sampler = sampler
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.ema = EMA(net, decay=ema_decay, warmup=ema_warmup)
        self.data_shape = tuple(data_shape) if data_shape is not None else self._shape_from_net(net)
        self.seed = seed
        self.conditional = conditional
        self.cond_drop_prob = float(cond_drop_prob)
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"model.cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
        if self.cond_drop_prob > 0 and (not conditional or getattr(net, "null_class", None) is None):
            raise ValueError("model.cond_drop_prob > 0 needs model.conditional=true and a network with a null "
                             "class (net.num_classes set)")

    @staticmethod
    def _shape_from_net(net: nn.Module) -> tuple[int, ...]:
        if hasattr(net, "image_size"):
            return (net.in_channels, net.image_size, net.image_size)
        return (getattr(net, "dim", getattr(net, "in_channels", 2)),)

    # ------------------------------------------------------------------ training
    def _cond(self, batch: dict) -> dict:
        if self.conditional:
            if "y" not in batch:
                raise KeyError("model.conditional=true but the data module yields no labels 'y'")
            return {"y": self._drop_labels(batch["y"]) if self.cond_drop_prob > 0 else batch["y"]}
        return {}

    def _drop_labels(self, y: torch.Tensor) -> torch.Tensor:
        """Replace each label by the null class with probability ``cond_drop_prob`` (CFG Alg. 1, line 3)."""
        from ..utils.random import derive_seed

        gen = torch.Generator().manual_seed(derive_seed(self.seed, "cond_drop", self.global_rank, self.global_step))
        drop = (torch.rand(y.shape[0], generator=gen) < self.cond_drop_prob).to(y.device)
        return y.masked_fill(drop, self.net.null_class)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        out = self.objective(self.net, self.schedule, x0, **self._cond(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, use_ema: bool = True, y: torch.Tensor | None = None, guidance: Callable | None = None,
                 schedule: DiscreteSchedule | None = None) -> Callable:
        """The model function ``eps_fn(x, t)`` the samplers take (``t``: int64 original indices).

        ``guidance`` (a :class:`diffzoo.guidance.Guidance`) wraps it for the labels ``y``, reading
        ᾱ / Σ from ``schedule`` (the one the sampler walks; default the training schedule)."""
        net = self.ema.shadow if use_ema else self.net
        if guidance is not None:
            def model_fn(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
                cond = {"y": labels} if labels is not None and self.conditional else {}
                return net(x, t.to(x.dtype), **cond)

            return guidance(model_fn, schedule or self.schedule, y, getattr(net, "null_class", None))
        cond = {"y": y} if y is not None else {}

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return net(x, t.to(x.dtype), **cond)

        return eps_fn

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        x_T: torch.Tensor | None = None,
        sampler: Callable | None = None,
        use_ema: bool = True,
        y: torch.Tensor | None = None,
        generator: GeneratorLike = None,
        callback: Callable | None = None,
        progress: bool = False,
        schedule: DiscreteSchedule | None = None,
        steps: int | None = None,
        guidance: Callable | None = None,
    ) -> torch.Tensor:
        """Draw samples ``[n, *data_shape]`` with the configured (or given) sampler.

        ``x_T`` defaults to N(0, I) noise drawn with ``generator``. EMA weights by default.
        ``schedule`` replaces the training schedule; ``steps=K`` respaces it to K evenly spaced
        steps (Improved DDPM §4) — the common "fewer steps" knob every module's ``sample`` takes.
        ``guidance`` wraps the denoiser (:mod:`diffzoo.guidance`) for the labels ``y``.
        """
        if steps is not None and schedule is None and steps < self.schedule.T:
            from ..schedules.discrete import spaced_timesteps

            schedule = self.schedule.respace(spaced_timesteps(self.schedule.T, int(steps), "even"))
        if x_T is None:
            if n is None:
                raise ValueError("sample() needs n or x_T")
            x_T = randn((n, *self.data_shape), generator, device=self.device)
        sampler = sampler or self.sampler
        was_training = self.training
        self.eval()
        try:
            schedule = schedule or self.schedule
            return sampler(self.denoiser(use_ema, y, guidance, schedule), schedule, x_T, generator=generator, callback=callback, progress=progress)
        finally:
            self.train(was_training)
