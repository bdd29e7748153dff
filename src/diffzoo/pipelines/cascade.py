"""Cascade pipelines (CDM, Ho, Saharia et al. 2021, §2 Fig. 1 / Algorithm in §3; Imagen §2.4): a base
model and super-resolution stages, each trained as its own run, sampled one after the other.

A pipeline is an ordered list of :class:`Stage`\\ s, each a loaded module with its own sampler, guidance
and — for a super-resolution stage — its conditioning-augmentation level and mode:

* the first stage samples from noise (any generative module, through the one sampling loop);
* every later stage is a super-resolution module (:class:`~diffzoo.lit.super_resolution.LowResolutionStage`) that super-resolves
  the previous stage's output. *Non-truncated* (CDM §3.2): the previous stage's final sample ``z_0`` is
  corrupted to level ``s`` by the stage's own augmentation. *Truncated*: the previous stage's reverse chain
  stops at ``t_s`` (:func:`~diffzoo.samplers.truncated.ancestral_until`) and its ``z_s`` is passed on (that
  stage's output then is ``z_s``, not an image, and is not evaluated).

Sample ``i`` of a stage depends on ``(seed, stage name, i)`` only, so a cascade's samples are the same
whatever the batch size. Configs live in ``conf/pipeline/``; ``diffzoo-sample pipeline=<name>`` and
``diffzoo-eval pipeline=<name>`` run them (:mod:`diffzoo.pipelines.run`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import ConfigError
from ..lit.super_resolution import LowResolutionStage, upsample_indices
from ..samplers import sample_indices
from ..samplers.truncated import ancestral_until
from ..utils.random import derive_seed

__all__ = ["AUGMENTATION_MODES", "Stage", "CascadeBatch", "check_stages", "run_cascade"]

AUGMENTATION_MODES = ("non_truncated", "truncated")


@dataclass
class Stage:
    """One stage of a pipeline: ``module`` (loaded), the ``sampler`` (a ``SamplerSpec``) and ``guidance``
    (or ``None``) it samples with; for a super-resolution stage the augmentation level ``aug_level``
    (``None``: the module's configured ``sample_level``) and ``augmentation`` (one of
    :data:`AUGMENTATION_MODES`)."""

    name: str
    module: Any
    sampler: Any
    guidance: Any = None
    aug_level: float | None = None
    augmentation: str = "non_truncated"
    use_ema: bool = True
    info: dict = field(default_factory=dict)

    @property
    def upsamples(self) -> bool:
        return isinstance(self.module, LowResolutionStage)

    @property
    def level(self) -> float:
        """The augmentation level this stage is sampled at (0 for a stage without one)."""
        if not self.upsamples:
            return 0.0
        return self.module.augmentation.sample_level if self.aug_level is None else float(self.aug_level)

    def takes_labels(self) -> bool:
        return "y" in self.module.denoiser(self.use_ema).cond_keys or (self.guidance is not None and not self.takes_text())

    def takes_text(self) -> bool:
        return "text" in self.module.denoiser(self.use_ema).cond_keys


@dataclass
class CascadeBatch:
    """What a cascade drew for some sample indices: per stage (in order) its output ``[b, C, H, W]``
    in data coordinates (for the stage before a truncated one: ``z_s``), the labels each stage got
    (``None``: unconditional), its NFE, and which outputs are truncated chains."""

    indices: torch.Tensor
    outputs: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor | None]
    nfe: dict[str, int]
    truncated: dict[str, bool]


def check_stages(stages: Sequence[Stage]) -> None:
    """Refuse a pipeline whose stages do not chain, naming the key: the first stage samples from noise,
    every later one is a super-resolution stage whose ``low_res_size`` and channels are the previous
    stage's output; truncation needs the previous stage's forward process to be the augmentation's."""
    if not stages:
        raise ConfigError("pipeline.stages is empty: give a base stage and its super-resolution stages")
    if stages[0].upsamples:
        raise ConfigError(f"pipeline.stages.{stages[0].name} is a super-resolution model; the first stage must sample "
                          "from noise (a base model)")
    for prev, st in zip(stages, stages[1:]):
        key = f"pipeline.stages.{st.name}"
        if not st.upsamples:
            raise ConfigError(f"{key}.ckpt_path holds a {type(st.module).__name__}; stages after the first must be "
                              "super-resolution models (model=super_resolution)")
        C, H = prev.module.data_shape[0], prev.module.data_shape[-1]
        if st.module.low_res_size != H or st.module.data_shape[0] != C:
            raise ConfigError(f"{key} takes {st.module.data_shape[0]}x{st.module.low_res_size}x{st.module.low_res_size} "
                              f"inputs but pipeline.stages.{prev.name} makes {C}x{H}x{H} images")
        if st.augmentation not in AUGMENTATION_MODES:
            raise ConfigError(f"{key}.augmentation must be one of {list(AUGMENTATION_MODES)}; got {st.augmentation!r}")
        if st.augmentation == "truncated":
            _check_truncation(prev, st, key)


def _check_truncation(prev: Stage, st: Stage, key: str) -> None:
    noise = st.module.augmentation.noise
    if noise is None:
        raise ConfigError(f"{key}.augmentation=truncated needs a stage trained with noise augmentation")
    if prev.guidance is not None and getattr(prev.guidance, "form", "eps") == "mean":
        raise ConfigError(f"{key}.augmentation=truncated runs pipeline.stages.{prev.name} ancestrally; its guidance "
                          "must be in the eps form")
    t = noise.time_of(torch.tensor([st.level]))
    a_aug = noise.process.alpha(t)
    a_prev = prev.module.schedule.alpha(t)
    if not torch.allclose(a_aug, a_prev, rtol=1e-6, atol=1e-9):
        raise ConfigError(f"{key}.augmentation=truncated: the stage was trained on another forward process than "
                          f"pipeline.stages.{prev.name}'s (alpha {float(a_aug[0]):.6f} vs {float(a_prev[0]):.6f} at level "
                          f"{st.level}); stopping that chain at s does not give its q(z_s): use non_truncated")


def _truncated_sampler(prev: Stage, t_stop: float):
    steps = prev.sampler.steps

    def run(model, x_T, generator=None, callback=None, progress=False):
        return ancestral_until(model, x_T, t_stop, steps, generator=generator, callback=callback, progress=progress)

    return run


@torch.no_grad()
def run_cascade(stages: Sequence[Stage], indices: Sequence[int], seed: int, labels: torch.Tensor | None = None,
                progress: bool = False, captions: Sequence[str] | None = None) -> CascadeBatch:
    """Draw the cascade samples ``indices`` (module docstring). ``labels`` int64 ``[b]`` go to every stage
    that takes them (class-conditional or guided), ``captions`` (one per sample) to every text stage."""
    indices = list(indices)
    out = CascadeBatch(torch.as_tensor(indices, dtype=torch.long), {}, {}, {}, {})
    prev_x, prev_truncated = None, False
    for k, st in enumerate(stages):
        nxt = stages[k + 1] if k + 1 < len(stages) else None
        truncate = nxt is not None and nxt.augmentation == "truncated" and nxt.level > 0
        sampler = _truncated_sampler(st, float(nxt.module.augmentation.noise.time_of(nxt.level))) if truncate else st.sampler
        y = labels if (labels is not None and st.takes_labels()) else None
        text = {"text": list(captions)} if (captions is not None and st.takes_text()) else None
        stage_seed = derive_seed(seed, "pipeline", st.name)
        st.module.eval()
        if not st.upsamples:
            batch = sample_indices(st.module.denoiser(st.use_ema), sampler, indices, stage_seed, st.module.data_shape,
                                   device=st.module.device, guidance=st.guidance, labels=y, progress=progress, cond=text)
        else:
            batch = upsample_indices(st.module, prev_x, indices, stage_seed, labels=y, aug_level=st.level, sampler=sampler,
                                     guidance=st.guidance, use_ema=st.use_ema, progress=progress, augmented=prev_truncated,
                                     cond=text)
        out.outputs[st.name], out.labels[st.name] = batch.x, y
        out.nfe[st.name], out.truncated[st.name] = int(batch.nfe), truncate
        prev_x, prev_truncated = batch.x, truncate
    return out
