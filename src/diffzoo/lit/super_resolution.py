"""``SuperResolutionModule``: one super-resolution stage of a cascade (CDM §2–3; Imagen §2.4).

A batch holds the high-resolution image ``x``; its low-resolution condition is derived from it,
``z = D(x)`` by area downsampling to ``net.low_res_size`` (:func:`diffzoo.data.downsampled.area_downsample`),
corrupted by the stage's conditioning augmentation (:mod:`diffzoo.objectives.conditioning_augmentation`;
seeded per step, stream ``"augmentation"``), and the network learns ``p_θ(x | z_s, s, y)`` with the
module's objective — everything else is :class:`~diffzoo.lit.DiffusionModule`'s.

Sampling takes a low-resolution batch: :meth:`SuperResolutionModule.upsample` (and
:func:`upsample_indices`, what the cascade pipeline calls) augments it at the fixed sampling level
and runs the sampler with it bound.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..data.base import collate_batch
from ..data.downsampled import area_downsample
from ..denoisers import Denoiser
from ..errors import ConfigError
from ..objectives.conditioning_augmentation import AugmentedLowRes, ConditioningAugmentation
from ..samplers import SamplerSpec, sample_indices
from ..schedules.discrete import DiscreteSchedule
from ..utils.random import derive_seed, per_sample_generators
from .diffusion import DiffusionModule

__all__ = ["LowResolutionStage", "SuperResolutionModule", "upsample_indices", "PREVIEW_SIZE"]

PREVIEW_SIZE = 64  # held-out low-resolution images kept for the training-time sample grid


class LowResolutionStage:
    """What every super-resolution stage adds to its diffusion module (mixed in before it): the
    low-resolution condition derived from the batch and augmented (:meth:`augmented_condition`), its
    augmentation at sampling (:meth:`condition`), and previews of held-out images (:meth:`preview_samples`).
    The concrete class calls :meth:`_init_stage` after its module's ``__init__``."""

    def _init_stage(self, augmentation: ConditioningAugmentation | None) -> None:
        if not hasattr(self.net, "low_res_size"):
            raise ConfigError(f"a super-resolution model needs net=SuperResolutionNet (net.low_res_size); got "
                              f"{type(self.net).__name__}")
        self.augmentation = augmentation if augmentation is not None else ConditioningAugmentation()
        self.augmentation.set_process(self.schedule)
        self.low_res_size = int(self.net.low_res_size)
        self._preview: dict | None = None

    def low_res_of(self, x: torch.Tensor) -> torch.Tensor:
        """The ground-truth condition ``z = D(x)``: ``x`` ``[B, C, H, W]`` → ``[B, C, h, h]`` (area)."""
        return area_downsample(x, self.low_res_size)

    def augmented_condition(self, x0: torch.Tensor) -> dict:
        """``{"low_res": z_s, "aug_level": s}`` for a training batch ``x0``: ``z_s ~ q(z_s | D(x0))`` with ``s``
        drawn from the training levels (and blur, if configured), seeded by the step (stream ``"augmentation"``)."""
        gen = torch.Generator().manual_seed(self.step_seed("augmentation"))
        aug = self.augmentation.train_draw(self.low_res_of(x0), gen)
        return {"low_res": aug.low_res, "aug_level": aug.aug_level}

    def _stage_denoiser(self, base: Denoiser) -> Denoiser:
        """``base`` (the module's own denoiser) also taking ``low_res`` and ``aug_level``."""
        return Denoiser(base.net_fn, self.schedule, self.prediction, cond_keys=tuple(base.cond_keys) + ("low_res", "aug_level"),
                        null_cond=base.null_cond)

    def _preview_cond(self, pick: torch.Tensor) -> dict:
        """The other conditions of the preview images ``pick`` (their labels, or their captions)."""
        if "text" in self._preview:
            return {"text": [self._preview["text"][int(i)] for i in pick]}
        if self.conditional and self._preview.get("y") is not None:
            return {"y": self._preview["y"][pick]}
        return {}

    # ------------------------------------------------------------------ sampling
    def condition(self, low_res: torch.Tensor, aug_level: float | None = None, generator=None) -> AugmentedLowRes:
        """The condition at sampling: no blur; Gaussian noise at ``aug_level`` (default: the configured
        ``augmentation.noise.sample_level``) — non-truncated augmentation (CDM §3.2)."""
        return self.augmentation.sample(low_res, aug_level, generator)

    @torch.no_grad()
    def upsample(self, low_res: torch.Tensor, y: torch.Tensor | None = None, aug_level: float | None = None,
                 sampler: SamplerSpec | None = None, guidance=None, seed: int = 0, use_ema: bool = True,
                 progress: bool = False, text: Sequence[str] | None = None) -> torch.Tensor:
        """Super-resolve ``low_res`` ``[B, C, h, h]`` (data coordinates) → ``[B, C, H, H]`` for labels ``y`` or
        (a text stage) captions ``text``; sample ``i`` depends on ``(seed, i)`` only (:func:`upsample_indices`)."""
        return upsample_indices(self, low_res, range(low_res.shape[0]), seed, labels=y, aug_level=aug_level,
                                sampler=sampler, guidance=guidance, use_ema=use_ema, progress=progress,
                                cond={"text": list(text)} if text is not None else None).x

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "val_set"):
            return
        dm.setup("validate")
        split = dm.val_set if dm.val_set is not None and len(dm.val_set) else dm.train_set  # no held-out split: training images
        n = min(PREVIEW_SIZE, len(split)) if split is not None else 0
        if n:
            items = split.__getitems__(list(range(n))) if hasattr(split, "__getitems__") else [split[i] for i in range(n)]
            batch = collate_batch(items)
            self._preview = {"low_res": self.low_res_of(batch["x"]), "y": batch.get("y")}
            if "text" in batch:
                self._preview["text"] = list(batch["text"])

    def preview_samples(self, indices: Sequence[int], seed: int, sampler: SamplerSpec | None = None,
                        use_ema: bool = True, progress: bool = False):
        """Super-resolve held-out low-resolution images (sample ``i``: held-out image ``i`` mod
        :data:`PREVIEW_SIZE`, with its label; training images when there is no held-out split): what the
        training-time sample grid and a run's final
        samples show for a stage that cannot sample from noise alone. Returns a ``SampleBatch``."""
        if self._preview is None:
            raise ValueError("SuperResolutionModule has no held-out low-resolution images (it was not fitted on a "
                             "data module): call upsample(low_res, y=...)")
        pick = torch.as_tensor(list(indices), dtype=torch.long) % self._preview["low_res"].shape[0]
        cond = self._preview_cond(pick)
        was_training = self.training
        self.eval()
        try:
            return upsample_indices(self, self._preview["low_res"][pick], indices, seed, labels=cond.pop("y", None),
                                    sampler=sampler, use_ema=use_ema, progress=progress, cond=cond)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sample(self, n: int | None = None, generator=None, use_ema: bool = True, **unsupported) -> torch.Tensor:
        """``n`` :meth:`preview_samples` (the sample grid callback's call); ``generator`` picks the seed.
        Use :meth:`upsample` for a low-resolution batch of your own (labels, guidance, a sampler)."""
        given = sorted(k for k, v in unsupported.items() if v is not None)
        if given:
            raise ValueError(f"SuperResolutionModule.sample takes no {given[0]}: use upsample(low_res, y=..., guidance=..., "
                             "sampler=...)")
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        return self.preview_samples(range(int(n or PREVIEW_SIZE)), seed, use_ema=use_ema).x


class SuperResolutionModule(LowResolutionStage, DiffusionModule):
    """A class-conditional (or unconditional) DDPM-family super-resolution stage (module docstring). Takes
    every argument of :class:`~diffzoo.lit.DiffusionModule`, plus

    Args:
        augmentation: the :class:`ConditioningAugmentation` of the low-resolution input (config
            ``model.augmentation``; ``None``: none). Its Gaussian noise uses the forward process it
            was configured with, else this model's own schedule (the same β table as the base model
            in the cascades here).

    ``net`` must be a :class:`~diffzoo.networks.super_resolution.SuperResolutionNet` (it has
    ``low_res_size``).
    """

    def __init__(self, net: nn.Module, schedule: DiscreteSchedule, objective: nn.Module, sampler,
                 optimizer: Callable[..., torch.optim.Optimizer], lr_scheduler: Callable | None = None,
                 ema_decay: float | None = 0.9999, ema_warmup: bool = False, data_shape: tuple[int, ...] | None = None,
                 seed: int = 0, conditional: bool = False, cond_drop_prob: float = 0.0,
                 augmentation: ConditioningAugmentation | None = None):
        if not hasattr(net, "low_res_size"):
            raise ConfigError(f"model=super_resolution needs net=SuperResolutionNet (net.low_res_size); got "
                              f"{type(net).__name__}")
        super().__init__(net, schedule, objective, sampler, optimizer, lr_scheduler, ema_decay, ema_warmup,
                         data_shape, seed, conditional, cond_drop_prob)
        self._init_stage(augmentation)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        out = self.objective(self.net, self.schedule, x0, **self.augmented_condition(x0), **self._cond(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The stage's denoiser (as :meth:`DiffusionModule.denoiser`) taking the condition ``low_res``
        ``[B, C, h, h]`` and ``aug_level`` ``[B]`` (already augmented: see :meth:`condition`) and,
        class-conditional, ``y``."""
        return self._stage_denoiser(super().denoiser(use_ema))


def upsample_indices(module: LowResolutionStage, low_res: torch.Tensor, indices: Sequence[int], seed: int, *,
                     labels: torch.Tensor | None = None, aug_level: float | None = None,
                     sampler: SamplerSpec | None = None, guidance=None, use_ema: bool = True, progress: bool = False,
                     augmented: bool = False, cond: dict | None = None):
    """Draw the super-resolution samples ``indices`` for the low-resolution images ``low_res``
    ``[b, C, h, h]`` (one per index) through the one sampling loop (:func:`diffzoo.samplers.sample_indices`:
    ``x_T`` from ``(seed, "x_T", i)``, the steps from ``(seed, "steps", i)``); the augmentation noise of
    sample ``i`` comes from ``(seed, "augmentation", i)``. With ``augmented``, ``low_res`` already is
    ``z_s`` at ``aug_level`` (truncated augmentation: the previous stage stopped at ``s``). The low-resolution
    condition (and ``cond``, e.g. a text stage's captions ``{"text": [...]}``, one per sample) is bound outside any
    guidance, so classifier-free guidance doubles it with the batch.
    Returns the :class:`~diffzoo.samplers.SampleBatch` (``x`` in data coordinates)."""
    indices = list(indices)
    low_res = low_res.to(module.device)
    level = module.augmentation.sample_level if aug_level is None else float(aug_level)
    extra = dict(cond or {})
    if augmented:
        aug = AugmentedLowRes(low_res, torch.full((low_res.shape[0],), level, device=low_res.device))
    else:
        gens = per_sample_generators(derive_seed(seed, "augmentation"), indices, stream="augmentation")
        aug = module.condition(low_res, level, gens)
    spec = sampler if sampler is not None else module.sampler

    def run(model, x_T, **kwargs):
        return spec(model.bind(low_res=aug.low_res, aug_level=aug.aug_level, **extra), x_T, **kwargs)

    return sample_indices(module.denoiser(use_ema), run, indices, seed, module.data_shape, device=module.device,
                          guidance=guidance, labels=labels, progress=progress)
