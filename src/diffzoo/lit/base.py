"""What every diffzoo LightningModule shares (:class:`DiffzooModule`: exact-resume seeding, the weight
EMA, optimizers from config partials, the run's metadata in checkpoints) and what every model with a
Gaussian forward process adds (:class:`GenerativeModule`: its denoiser, its sampler, sampling)."""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch

from ..denoisers import Denoiser
from ..errors import ConfigError
from ..optim.ema import EMA
from ..samplers import SamplerSpec
from ..utils.random import GeneratorLike, derive_seed

__all__ = ["DiffzooModule", "GenerativeModule"]


class DiffzooModule(L.LightningModule):
    """Base class. Subclasses set, in ``__init__``: ``net`` (the trained ``nn.Module``), ``ema``
    (an :class:`diffzoo.optim.EMA` of ``net``, or ``None``), ``optimizer_factory`` /
    ``lr_scheduler_factory`` (``_partial_`` configs), ``seed`` and ``data_shape``.

    * Every random draw of training micro-batch m of optimizer step k on rank r (noise levels, noise,
      dropout) is a function of ``(seed, r, k, m)`` (:meth:`step_seed`): a resumed run draws exactly
      what an uninterrupted one would, and the micro-batches of a gradient-accumulation window draw
      different noise.
    * The EMA is updated inside ``optimizer_step``, so checkpoints written at the end of a batch
      always hold raw and EMA weights of the same step.
    * Checkpoints carry ``{"diffzoo": {config, data_shape, wandb_run_id}}``: enough to rebuild
      the model alone (``lit.build.load_module``) and to re-attach a resumed run to its W&B run.

    ``PARTS`` names the config groups the builder instantiates and passes to the class
    (:func:`diffzoo.lit.build.build_module`); a group set in the config that the class does not take
    is an error.
    """

    PARTS: tuple[str, ...] = ("net", "schedule", "optimizer", "lr_scheduler")
    run_config: dict | None = None  # the resolved run config, set by lit.build.build_module
    wandb_run_id: str | None = None
    fast_paths = None  # a lit.fast_paths.FastPaths, set by apply_fast_paths (config group ``perf``)
    _micro_batch = 0

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.fast_paths is not None and self.fast_paths.channels_last and isinstance(batch, dict):
            x = batch.get("x")
            if isinstance(x, torch.Tensor) and x.ndim == 4:
                batch = {**batch, "x": x.contiguous(memory_format=torch.channels_last)}
        return batch

    def step_seed(self, stream: str) -> int:
        """The seed of ``stream`` for this micro-batch: ``(seed, stream, rank, global_step)``, plus the
        micro-batch's place in its gradient-accumulation window when it is not the first (so a run
        without accumulation draws what it always drew)."""
        parts = (self.seed, stream, self.global_rank, self.global_step)
        return derive_seed(*parts, self._micro_batch) if self._micro_batch else derive_seed(*parts)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # ``global_step`` counts optimizer steps; the micro-batch index tells the batches of one
        # accumulation window apart (checkpoints fall on window boundaries, so this resumes exactly).
        accumulate = int(getattr(self.trainer, "accumulate_grad_batches", 1) or 1) if self._trainer is not None else 1
        self._micro_batch = batch_idx % accumulate
        torch.manual_seed(self.step_seed("train"))

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if getattr(self, "ema", None) is not None:
            self.ema.update(self.net)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning refuses to clip the gradients of a fused optimizer under mixed precision (it
        assumes the optimizer unscales them inside ``step``). Clip them here instead, unscaling
        first when a grad scaler is in use (fp16), so ``perf.fused_optimizer`` composes with
        ``trainer.gradient_clip_val``."""
        if gradient_clip_val is None or not getattr(optimizer, "_step_supports_amp_scaling", False):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            scaler.unscale_(optimizer)  # scaler.step() then skips its own unscaling
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)

    def trainable_parameters(self):
        """What the optimizer trains: the network's parameters (subclasses add parameter groups)."""
        return self.net.parameters()

    def configure_optimizers(self):
        extra = self.fast_paths.optimizer_kwargs(self.optimizer_factory) if self.fast_paths is not None else {}
        optimizer = self.optimizer_factory(params=self.trainable_parameters(), **extra)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["diffzoo"] = {
            "config": self.run_config,
            "data_shape": list(self.data_shape),
            "wandb_run_id": self.wandb_run_id,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("diffzoo", {})
        self.wandb_run_id = meta.get("wandb_run_id", self.wandb_run_id)

    @staticmethod
    def _shape_from_net(net) -> tuple[int, ...]:
        """One sample's shape as the network declares it (``(C, H, W)`` or ``(D,)``)."""
        if hasattr(net, "image_size"):
            return (net.in_channels, net.image_size, net.image_size)
        return (getattr(net, "dim", getattr(net, "in_channels", 2)),)

    def _labels(self, batch: dict) -> torch.Tensor:
        """The batch's class labels ``y`` (a clear error when the data module yields none)."""
        if "y" not in batch:
            raise KeyError(f"{type(self).__name__} needs labelled data ('y'): model.conditional=true or a classifier, "
                           "but the data module yields no labels; choose a data set with classes")
        return batch["y"]

    def num_parameters(self) -> int:
        """Trainable parameters of the network (the EMA copy not counted)."""
        return sum(p.numel() for p in self.net.parameters())

    def weights_label(self, use_ema: bool = True) -> str:
        """``"ema"`` when sampling / evaluating uses averaged weights, else ``"raw"`` (a model kept
        without EMA always uses its raw weights)."""
        return "ema" if use_ema and getattr(self, "ema", None) is not None else "raw"


class GenerativeModule(DiffzooModule):
    """A generative model with a Gaussian forward process (``schedule``): it gives a
    :class:`~diffzoo.denoisers.Denoiser` (:meth:`denoiser`) and samples with its
    :class:`~diffzoo.samplers.SamplerSpec` (``sampler``)."""

    PARTS = ("net", "schedule", "objective", "sampler", "optimizer", "lr_scheduler", "ema")
    sampler: SamplerSpec

    def _set_parts(self, net, schedule, objective, optimizer, lr_scheduler, ema_decay: float | None, ema_warmup: bool,
                   data_shape, seed: int, conditional: bool) -> None:
        """Set what every generative module keeps of its config parts (:class:`DiffzooModule`'s contract):
        the network, its forward process and objective, the optimizer / scheduler partials, the weight EMA
        (none for ``ema_decay=None``), one sample's shape (the network's own when not given), the seed
        and whether the network takes the class label."""
        self.net = net
        self.schedule = schedule
        self.objective = objective
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.ema = EMA(net, decay=ema_decay, warmup=ema_warmup) if ema_decay is not None else None
        self.data_shape = tuple(data_shape) if data_shape is not None else self._shape_from_net(net)
        self.seed = seed
        self.conditional = conditional

    def _set_sampler(self, sampler) -> None:
        """Store the sampler as a :class:`SamplerSpec` (a stored ``_partial_`` of an earlier version
        too) and check that it fits the forward process, naming the key if not."""
        self.sampler = SamplerSpec.of(sampler)
        self.check_sampler(self.sampler)

    def check_sampler(self, sampler: SamplerSpec) -> None:
        """Raise :class:`~diffzoo.errors.ConfigError` unless ``sampler`` can sample this model."""
        try:
            sampler.plan(self.schedule)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"sampler={sampler.name} cannot sample this {type(self.schedule).__name__} model: {err}") from None

    def denoiser(self, use_ema: bool = True) -> Denoiser:  # pragma: no cover - abstract
        """The model as a :class:`~diffzoo.denoisers.Denoiser` (EMA weights by default)."""
        raise NotImplementedError

    def prior_sample(self, n: int, generator: GeneratorLike = None) -> torch.Tensor:
        """Starting points ``x_T`` ``[n, *data_shape]`` of sampling (model coordinates) from the
        forward process's prior (N(0, I) for DDPM / VP, N(0, σ_max² I) for VE, U[0, 1] for NCSN)."""
        return self.schedule.prior_sample((n, *self.data_shape), generator, device=self.device)

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        x_T: torch.Tensor | None = None,
        sampler=None,
        use_ema: bool = True,
        y: torch.Tensor | None = None,
        generator: GeneratorLike = None,
        callback: Callable | None = None,
        progress: bool = False,
        steps: int | None = None,
        guidance=None,
        cond: dict | None = None,
    ) -> torch.Tensor:
        """Draw samples ``[n, *data_shape]`` in data coordinates (``[−1, 1]`` for images).

        ``sampler`` (a :class:`~diffzoo.samplers.SamplerSpec` or its config) replaces the configured
        one; ``steps`` sets its NFE budget. ``x_T`` (model coordinates) defaults to
        :meth:`prior_sample` drawn with ``generator``. ``guidance`` (:mod:`diffzoo.guidance`) wraps
        the denoiser; ``y`` are the labels it (or a class-conditional model) gets. ``cond`` holds any
        other condition the denoiser takes (its ``cond_keys``), e.g. ``{"text": [n captions]}`` for a
        text model or ``{"masked_image": …, "mask": …}`` for an inpainting one; an unknown key is an error.
        """
        spec = SamplerSpec.of(sampler) if sampler is not None else self.sampler
        if steps is not None:
            spec = spec.with_steps(int(steps))
        if x_T is None:
            if n is None:
                raise ValueError("sample() needs n or x_T")
            x_T = self.prior_sample(n, generator)
        model = self.denoiser(use_ema)
        if guidance is not None:
            model = guidance.wrap(model)
        if y is not None:
            model = model.bind(y=torch.as_tensor(y, device=x_T.device))
        if cond:
            unknown = sorted(set(cond) - set(model.cond_keys))
            if unknown:
                raise ValueError(f"sample(): this model takes no condition {unknown[0]!r}; it takes {list(model.cond_keys) or 'none'}")
            model = model.bind(**{k: v.to(x_T.device) if torch.is_tensor(v) else v for k, v in cond.items()})
        was_training = self.training
        self.eval()
        try:
            return model.to_data(spec(model, x_T, generator=generator, callback=callback, progress=progress))
        finally:
            self.train(was_training)
