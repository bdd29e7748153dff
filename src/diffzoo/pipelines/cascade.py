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

__all__ = ["AUGMENTATION_MODES", "STAGE_SETTINGS", "Stage", "CascadeBatch", "load_stage", "check_upsampler", "check_stages",
           "draw_stage", "run_cascade"]

AUGMENTATION_MODES = ("non_truncated", "truncated")
# the settings a pipeline stage takes (conf/pipeline/cdm_*.yaml; unCLIP's upsamplers take all but augmentation)
STAGE_SETTINGS = ("ckpt_path", "sampler", "guidance", "aug_level", "augmentation")


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


def load_stage(st_cfg, key: str, name: str, device, use_ema: bool = True,
               settings: Sequence[str] = STAGE_SETTINGS) -> Stage:
    """One pipeline stage from its config ``st_cfg`` (a mapping of ``settings``: ``ckpt_path``, ``sampler``
    settings replacing the stored sampler's, ``guidance``, ``aug_level`` in [0, 1] or null, ``augmentation``),
    loaded on ``device``; a bad setting is refused in one line naming ``key`` (e.g. ``pipeline.stages.sr16``
    or ``pipeline.upsamplers[0]``). The one loader of the cascade pipelines and unCLIP's upsamplers."""
    from omegaconf import DictConfig, OmegaConf

    from ..runtime import guidance_from_config, load_for_sampling

    if not isinstance(st_cfg, DictConfig):
        raise ConfigError(f"{key} must be a mapping of {', '.join(settings)}; got {st_cfg!r}")
    if OmegaConf.is_missing(st_cfg, "ckpt_path") or not st_cfg.get("ckpt_path"):
        raise ConfigError(f"{key}.ckpt_path must be set (that stage's checkpoint, e.g. "
                          f"runs/<experiment>/<run_id>/checkpoints/last.ckpt)")
    unknown = sorted(set(st_cfg) - set(settings))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not a stage setting; valid: {', '.join(settings)}")
    module, spec = load_for_sampling(st_cfg.ckpt_path, st_cfg.get("sampler"), device)
    guidance = guidance_from_config(OmegaConf.create({"guidance": st_cfg.get("guidance")}), module, spec).guidance
    level = st_cfg.get("aug_level")
    if level is not None and not 0.0 <= float(level) <= 1.0:
        raise ConfigError(f"{key}.aug_level={level} must lie in [0, 1]")
    return Stage(str(name), module, spec, guidance, None if level is None else float(level),
                 str(st_cfg.get("augmentation") or "non_truncated"), use_ema,
                 info={"ckpt_path": str(st_cfg.ckpt_path), "sampler": spec.describe()})


def check_upsampler(st: Stage, shape: Sequence[int], key: str, prev_key: str) -> None:
    """Refuse ``st`` unless it is a super-resolution stage whose low-resolution input (channels, ``low_res_size``)
    is ``shape = (C, H, W)``, the previous stage's output: one line naming ``key`` and both shapes."""
    if not st.upsamples:
        raise ConfigError(f"{key} holds a {type(st.module).__name__}; stages after the first must be "
                          "super-resolution models (model=super_resolution)")
    C, H, W = (int(s) for s in shape[-3:])
    c, h = int(st.module.data_shape[0]), int(st.module.low_res_size)
    if (c, h, h) != (C, H, W):
        raise ConfigError(f"{key} takes {c}x{h}x{h} inputs but {prev_key} makes {C}x{H}x{W} images")


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
        check_upsampler(st, prev.module.data_shape, key, f"pipeline.stages.{prev.name}")
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
def draw_stage(st: Stage, indices: Sequence[int], seed: int, prev_x: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, captions: Sequence[str] | None = None, sampler=None,
               augmented: bool = False, progress: bool = False):
    """Stage ``st``'s samples ``indices`` (a ``SampleBatch``): from noise, or — a super-resolution stage —
    super-resolving ``prev_x`` (one image per index; ``augmented``: already ``z_s``). Sample ``i`` depends on
    ``(seed, stage name, i)`` only. ``labels`` / ``captions`` go to it as given (the caller decides which
    stages take them); ``sampler`` replaces the stage's (the truncated chain)."""
    sampler = st.sampler if sampler is None else sampler
    text = {"text": list(captions)} if captions is not None else None
    stage_seed = derive_seed(seed, "pipeline", st.name)
    st.module.eval()
    if not st.upsamples:
        return sample_indices(st.module.denoiser(st.use_ema), sampler, indices, stage_seed, st.module.data_shape,
                              device=st.module.device, guidance=st.guidance, labels=labels, progress=progress, cond=text)
    return upsample_indices(st.module, prev_x, indices, stage_seed, labels=labels, aug_level=st.level, sampler=sampler,
                            guidance=st.guidance, use_ema=st.use_ema, progress=progress, augmented=augmented, cond=text)


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
        text = captions if (captions is not None and st.takes_text()) else None
        batch = draw_stage(st, indices, seed, prev_x, y, text, sampler, augmented=prev_truncated, progress=progress)
        out.outputs[st.name], out.labels[st.name] = batch.x, y
        out.nfe[st.name], out.truncated[st.name] = int(batch.nfe), truncate
        prev_x, prev_truncated = batch.x, truncate
    return out
