"""``ScoreModule``: score network + forward process (SDE or σ ladder) + DSM objective + sampler.

The score-based counterpart of :class:`~diffzoo.lit.diffusion.DiffusionModule`, with the same
conventions: training noise of step k on rank r is seeded by ``(seed, r, k)`` (bit-exact resume),
the EMA follows every optimizer step inside ``optimizer_step``, checkpoints carry the run config
and the W&B run id, and sampling uses EMA weights unless told otherwise.

It covers NCSN / NCSNv2 (a :class:`~diffzoo.schedules.ladder.SigmaLadder`, annealed Langevin
dynamics) and Score SDE (VP / sub-VP / VE SDEs, predictor–corrector or probability-flow ODE).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..optim.ema import EMA
from ..parameterization.score import ScoreParameterization
from ..samplers.langevin import annealed_langevin, langevin
from ..samplers.ode import probability_flow_ode
from ..schedules.ladder import SigmaLadder
from ..utils.random import GeneratorLike
from .base import GenerativeModule

__all__ = ["ScoreModule", "DATA_TRANSFORMS", "with_steps"]

DataTransform = Literal["none", "unit"]
DATA_TRANSFORMS = ("none", "unit")


def with_steps(sde, steps: int):
    """A copy of ``sde`` discretised with ``N = steps`` (same constants, on the same device).

    Rebuilt from the constructor's own arguments, which every SDE keeps as attributes of the
    same name (``beta_min``, ``beta_max`` / ``sigma_min``, ``sigma_max``)."""
    params = inspect.signature(type(sde).__init__).parameters
    kwargs = {name: getattr(sde, name) for name in params if name not in ("self", "N")}
    device = next(iter(sde.buffers()), torch.empty(0)).device
    return type(sde)(**kwargs, N=int(steps)).to(device)


def _check_sampler(sampler: Callable, schedule) -> None:
    """A σ ladder samples with annealed Langevin dynamics; an SDE with the PC / ODE samplers."""
    fn = getattr(sampler, "func", sampler)
    if isinstance(schedule, SigmaLadder) and fn is not annealed_langevin:
        raise ConfigError("a σ ladder (schedule=ncsn_sigmas / ncsnv2_sigmas) samples with sampler=annealed_langevin, "
                          f"got {getattr(fn, '__name__', fn)}")
    if not isinstance(schedule, SigmaLadder) and fn in (annealed_langevin, langevin):
        raise ConfigError(f"sampler=annealed_langevin needs a σ ladder schedule, got {type(schedule).__name__}; "
                          "an SDE samples with sampler=pc or sampler=ode")


class ScoreModule(GenerativeModule):
    """A score-based generative model as a LightningModule.

    Args:
        net: the network (``nn.Module``); how it is called is the parameterisation's business.
        schedule: the forward process — an :class:`~diffzoo.schedules.sde.SDE` (Score SDE) or a
            :class:`~diffzoo.schedules.ladder.SigmaLadder` (NCSN / NCSNv2).
        objective: ``objective(score_fn, schedule, x0, **cond) → ObjectiveOutput``
            (:mod:`diffzoo.objectives.dsm`).
        sampler: a sampler with its options bound (Hydra ``_partial_``), called as
            ``sampler(score_fn, schedule, x_T, generator=…, callback=…, progress=…)``; for a σ
            ladder ``schedule`` is the tensor of levels (:func:`diffzoo.samplers.annealed_langevin`).
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
        if data_transform not in DATA_TRANSFORMS:
            raise ConfigError(f"model.data_transform: unknown {data_transform!r}; allowed: {list(DATA_TRANSFORMS)}")
        parameterization.check(net, schedule, conditional)
        if hasattr(objective, "check_schedule"):
            objective.check_schedule(schedule)
        _check_sampler(sampler, schedule)
        self.net = net
        self.schedule = schedule
        self.objective = objective
        self.sampler = sampler
        self.parameterization = parameterization
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.ema = EMA(net, decay=ema_decay, warmup=ema_warmup) if ema_decay is not None else None
        self.data_transform = data_transform
        self.data_shape = tuple(data_shape) if data_shape is not None else self._shape_from_net(net)
        self.seed = seed
        self.conditional = conditional

    def check_sampler(self, sampler: Callable) -> None:
        """Raise :class:`~diffzoo.errors.ConfigError` unless ``sampler`` fits the forward process
        (a σ ladder: annealed Langevin; an SDE: PC or the probability-flow ODE)."""
        _check_sampler(sampler, self.schedule)

    @staticmethod
    def _shape_from_net(net: nn.Module) -> tuple[int, ...]:
        if hasattr(net, "image_size"):
            return (net.in_channels, net.image_size, net.image_size)
        return (getattr(net, "dim", getattr(net, "in_channels", 2)),)

    # ------------------------------------------------------------------ data scaling
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data in ``[−1, 1]`` → the model's coordinates (identity, or ``(x + 1)/2``)."""
        return (x + 1) / 2 if self.data_transform == "unit" else x

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        """The model's coordinates → data coordinates ``[−1, 1]``."""
        return 2 * x - 1 if self.data_transform == "unit" else x

    @property
    def model_data_range(self) -> tuple[float, float]:
        """The range of (image) data in the model's coordinates: ``(−1, 1)`` or ``(0, 1)``."""
        return (0.0, 1.0) if self.data_transform == "unit" else (-1.0, 1.0)

    # ------------------------------------------------------------------ training
    def _cond(self, batch: dict) -> dict:
        if self.conditional:
            if "y" not in batch:
                raise KeyError("model.conditional=true but the data module yields no labels 'y'")
            return {"y": batch["y"]}
        return {}

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
    def score_fn(self, use_ema: bool = True, y: torch.Tensor | None = None) -> Callable:
        """``score_fn(x, t) → ∇_x log p_t(x)`` in the model's coordinates (``t`` float ``[B]``:
        SDE time, or σ for a ladder), with EMA (default, if kept) or raw weights."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net
        score = self._score_of(net)
        return score if y is None else functools.partial(score, y=y)

    def denoiser(self, use_ema: bool = True, y: torch.Tensor | None = None) -> Callable:
        """The model function the samplers take — here the score, :meth:`score_fn`."""
        return self.score_fn(use_ema, y)

    def prior_sample(self, n: int, generator: GeneratorLike = None) -> torch.Tensor:
        """Starting points ``x_T`` ``[n, *data_shape]`` of sampling, in the model's coordinates:
        the SDE's prior (``N(0, I)`` for VP, ``N(0, σ_max² I)`` for VE) or the ladder's start."""
        return self.schedule.prior_sampling((n, *self.data_shape), generator=generator, device=self.device)

    def _sampling_call(self, schedule, steps: int | None, sampler: Callable) -> tuple[Any, dict]:
        """The process argument of the sampler and any extra keywords, for a budget of ``steps``.

        SDE: ``steps`` is the number of time steps ``N`` of the discretisation (PC: ``N`` updates,
        ``N·(1 + n_corrector)`` NFE; the adaptive ODE solver ignores it). σ ladder: ``steps`` is
        the number of Langevin updates (≈ NFE), see :meth:`SigmaLadder.plan`."""
        if isinstance(schedule, SigmaLadder):
            n_steps_each = getattr(sampler, "keywords", {}).get("n_steps_each")
            if n_steps_each is None:
                return schedule.sigmas, {}
            plan = schedule.plan(steps, int(n_steps_each))
            return plan.sigmas, {"n_steps_each": plan.n_steps_each}
        if steps is not None and int(steps) != schedule.N:
            return with_steps(schedule, int(steps)), {}
        return schedule, {}

    def sampling_steps(self, steps: int | None = None, sampler: Callable | None = None) -> int | None:
        """The steps a :meth:`sample` call with ``steps`` walks (what evaluation reports next to
        the NFE): an SDE's discretisation ``N``, ``None`` for the adaptive probability-flow ODE
        (its NFE is the solver's), for a σ ladder the Langevin updates ``L' · n_steps_each``."""
        sampler = sampler or self.sampler
        if getattr(sampler, "func", sampler) is probability_flow_ode:
            return None
        process, extra = self._sampling_call(self.schedule, steps, sampler)
        if isinstance(self.schedule, SigmaLadder):
            n_each = extra.get("n_steps_each", getattr(sampler, "keywords", {}).get("n_steps_each", 1))
            return int(len(process)) * int(n_each)
        return int(process.N)

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
        schedule: nn.Module | None = None,
        steps: int | None = None,
        guidance: Callable | None = None,
    ) -> torch.Tensor:
        """Draw samples ``[n, *data_shape]`` in data coordinates (``[−1, 1]`` for images).

        ``guidance`` (:class:`diffzoo.guidance.ScoreClassifierGuidance`) wraps the score for labels ``y``.

        ``x_T`` (model coordinates) defaults to :meth:`prior_sample` drawn with ``generator``.
        ``steps``: the number of discretisation steps ``N`` of an SDE sampler, or the budget of
        Langevin updates of annealed Langevin dynamics (see :meth:`_sampling_call`); ``None`` runs
        the sampler as configured. ``schedule`` replaces the training process for this call.
        """
        if x_T is None:
            if n is None:
                raise ValueError("sample() needs n or x_T")
            x_T = self.prior_sample(n, generator)
        sampler = sampler or self.sampler
        process, extra = self._sampling_call(schedule or self.schedule, steps, sampler)
        was_training = self.training
        self.eval()
        try:
            score_fn = self.score_fn(use_ema, y) if guidance is None else guidance(  # an unconditional model ignores y
                lambda x, t, c: self.score_fn(use_ema, c if self.conditional else None)(x, t), process, y)
            x = sampler(score_fn, process, x_T, generator=generator, callback=callback, progress=progress, **extra)
        finally:
            self.train(was_training)
        return self.from_model(x)
