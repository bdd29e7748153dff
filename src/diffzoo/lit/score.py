"""``ScoreModule``: score network + forward process (SDE or σ ladder) + DSM objective + sampler.

The score-based counterpart of :class:`~diffzoo.lit.diffusion.DiffusionModule`, with the same
conventions: training noise of step k on rank r is seeded by ``(seed, r, k)`` (bit-exact resume),
the EMA follows every optimizer step inside ``optimizer_step``, checkpoints carry the run config
and the W&B run id, and sampling uses EMA weights unless told otherwise.

It covers NCSN / NCSNv2 (a :class:`~diffzoo.schedules.ladder.SigmaLadder`, annealed Langevin
dynamics) and Score SDE (VP / sub-VP / VE SDEs, predictor–corrector or probability-flow ODE).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..denoisers import Denoiser, ScoreFnView
from ..parameterization.data_scaling import DATA_TRANSFORMS, DataScaling, DataTransform
from ..parameterization.score import ScoreParameterization
from .base import GenerativeModule

__all__ = ["ScoreModule", "DATA_TRANSFORMS"]


class ScoreModule(GenerativeModule):
    """A score-based generative model as a LightningModule.

    Args:
        net: the network (``nn.Module``); how it is called is the parameterisation's business.
        schedule: the forward process — an :class:`~diffzoo.schedules.sde.SDE` (Score SDE) or a
            :class:`~diffzoo.schedules.ladder.SigmaLadder` (NCSN / NCSNv2).
        objective: ``objective(score_fn, schedule, x0, **cond) → ObjectiveOutput``
            (:mod:`diffzoo.objectives.dsm`).
        sampler: a :class:`~diffzoo.samplers.SamplerSpec` (or the ``_partial_`` sampler config of a
            checkpoint written before it existed): annealed Langevin for a σ ladder; PC, the
            probability-flow ODE, DDIM or ancestral sampling for an SDE.
        optimizer: ``optimizer(params) → Optimizer`` (``_partial_``).
        parameterization: a :class:`ScoreParameterization` or its ``kind`` (``eps``, ``scaled``,
            ``direct``).
        lr_scheduler: optional ``lr_scheduler(optimizer)`` stepped every step.
        ema_decay: EMA decay of the weights, or ``None`` for no EMA (NCSN samples with the raw
            weights; NCSNv2's Technique 5 adds EMA 0.999). ema_warmup: see :class:`~diffzoo.optim.ema.EMA`.
        data_transform: ``"none"`` — the model sees the data as loaded, in ``[−1, 1]``;
            ``"unit"`` — it sees ``(x + 1)/2 ∈ [0, 1]``, the scaling of NCSN, NCSNv2 and Score SDE's
            VE models (``data.centered=False``), for which their σ values were chosen. Samples
            are mapped back to ``[−1, 1]``.
        data_shape: shape of one sample; seed: base seed; conditional: feed the class label ``y``.
    """

    PARTS = GenerativeModule.PARTS + ("parameterization",)

    def __init__(
        self,
        net: nn.Module,
        schedule: nn.Module,
        objective: nn.Module,
        sampler: Callable,
        optimizer: Callable[..., torch.optim.Optimizer],
        parameterization: ScoreParameterization | str = "eps",
        lr_scheduler: Callable | None = None,
        ema_decay: float | None = 0.9999,
        ema_warmup: bool = False,
        data_transform: DataTransform = "none",
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        conditional: bool = False,
    ):
        super().__init__()
        if isinstance(parameterization, str):
            parameterization = ScoreParameterization(parameterization)
        self.scaling = DataScaling(data_transform)
        parameterization.check(net, schedule, conditional)
        if hasattr(objective, "check_schedule"):
            objective.check_schedule(schedule)
        self._set_parts(net, schedule, objective, optimizer, lr_scheduler, ema_decay, ema_warmup, data_shape, seed, conditional)
        self.parameterization = parameterization
        self.data_transform = data_transform
        self._set_sampler(sampler)

    # ------------------------------------------------------------------ data scaling
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data in ``[−1, 1]`` → the model's coordinates (identity, or ``(x + 1)/2``)."""
        return self.scaling.to_model(x)

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        """The model's coordinates → data coordinates ``[−1, 1]``."""
        return self.scaling.from_model(x)

    @property
    def model_data_range(self) -> tuple[float, float]:
        """The range of (image) data in the model's coordinates: ``(−1, 1)`` or ``(0, 1)``."""
        return self.scaling.range

    # ------------------------------------------------------------------ training
    def _cond(self, batch: dict) -> dict:
        return {"y": self._labels(batch)} if self.conditional else {}

    def _score_of(self, net: nn.Module) -> Callable:
        def score_fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            return self.parameterization(net, self.schedule, x, t, y)

        return score_fn

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = self.to_model(batch["x"])
        out = self.objective(self._score_of(self.net), self.schedule, x0, **self._cond(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The score network (EMA weights when kept and ``use_ema``) as a score-predicting
        :class:`~diffzoo.denoisers.Denoiser` on its forward process, in the model's coordinates
        (``data_range`` ``[−1, 1]`` or ``[0, 1]``; ``to_data`` maps samples back to ``[−1, 1]``).
        Its time input is the process time (SDE time, or σ for a ladder); the parameterisation
        turns it into what the network sees."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net
        return Denoiser(self._score_of(net), self.schedule, "score", model_time=_process_time,
                        cond_keys=("y",) if self.conditional else (), data_range=self.model_data_range,
                        to_data=self.from_model, from_data=self.to_model)

    def score_fn(self, use_ema: bool = True, y: torch.Tensor | None = None) -> Callable:
        """``score_fn(x, t) → ∇_x log p_t(x)`` in the model's coordinates (``t`` float ``[B]``:
        SDE time, or σ for a ladder), with EMA (default, if kept) or raw weights."""
        return ScoreFnView(self.denoiser(use_ema).bind(y=y))


def _process_time(t):
    """A score model's time input is the process time itself (its parameterisation scales it)."""
    return t
