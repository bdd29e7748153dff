"""``EDMModule``: a network trained and sampled with EDM's preconditioning, noise distribution and loss
weighting (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models").

The trained network is the raw ``F_θ``; the module reads it through
:class:`~diffzoo.parameterization.edm.EDMPreconditioning` as the denoiser ``D_θ(x; σ)`` (eq. 7), which is
an x̂₀ prediction on :class:`~diffzoo.schedules.EDMProcess` (α = 1, σ(t) = t): every sampler of the
project runs on it through the denoiser contract. Seeding, EMA, optimizers and checkpoints are
:class:`~diffzoo.lit.base.GenerativeModule`'s.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..denoisers import Denoiser
from ..errors import ConfigError
from ..parameterization.edm import EDMPreconditioning, Preconditioned
from .base import GenerativeModule

__all__ = ["EDMModule"]


class EDMModule(GenerativeModule):
    """An EDM model as a LightningModule.

    Args:
        net: the raw network ``F_θ(x, c_noise, y=None)`` (``c_noise = ¼ ln σ`` is its time input).
        schedule: the forward process, an :class:`~diffzoo.schedules.EDMProcess` (``schedule=edm``).
        objective: ``objective(D, schedule, x0, **cond) → ObjectiveOutput``
            (:class:`~diffzoo.objectives.EDMLoss`; it reads σ_d from ``D``).
        sampler: a :class:`~diffzoo.samplers.SamplerSpec`.
        optimizer, lr_scheduler, ema_decay, ema_warmup, data_shape, seed: as
            :class:`~diffzoo.lit.DiffusionModule`.
        sigma_data: σ_d of the preconditioning and of the loss weight (EDM: 0.5) — set once, here.
        conditional: pass the batch's class label ``y`` to the network.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: nn.Module,
        objective: nn.Module,
        sampler,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        ema_decay: float | None = 0.9999,
        ema_warmup: bool = False,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        sigma_data: float = 0.5,
        conditional: bool = False,
    ):
        super().__init__()
        probe = torch.tensor([0.5, 2.0], dtype=torch.float64)
        if not (torch.equal(schedule.alpha(probe), torch.ones_like(probe)) and torch.equal(schedule.sigma(probe), probe)):
            raise ConfigError(f"model=edm needs the forward process of EDM (alpha = 1, sigma(t) = t): set schedule=edm, "
                              f"not {type(schedule).__name__}")
        self._set_parts(net, schedule, objective, optimizer, lr_scheduler, ema_decay, ema_warmup, data_shape, seed, conditional)
        self.precond = EDMPreconditioning(sigma_data)
        self._set_sampler(sampler)

    def _cond(self, batch: dict) -> dict:
        return {"y": self._labels(batch)} if self.conditional else {}

    def preconditioned(self, use_ema: bool = False) -> Preconditioned:
        """``D_θ(x, σ, **cond)`` (EDM eq. 7) with the raw weights, or the EMA weights when kept and ``use_ema``."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net
        return self.precond.bind(net)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        out = self.objective(self.preconditioned(), self.schedule, x0, **self._cond(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """``D_θ`` (EMA weights by default) as an x̂₀-predicting :class:`~diffzoo.denoisers.Denoiser` on
        the EDM process; its time input is σ itself (the preconditioning computes c_noise)."""
        return Denoiser(self.preconditioned(use_ema), self.schedule, "x0", model_time=_sigma_is_time,
                        cond_keys=("y",) if self.conditional else ())


def _sigma_is_time(t):
    """The network function of an EDM model takes σ, which is the process time."""
    return t
