"""What the command-line tools share once a checkpoint is to be sampled: the device, the module and
the sampler it runs, guidance from the config, where a run's outputs go. Entry points
(``diffzoo-sample``, ``diffzoo-eval``, the DDIM table, the guidance sweep, ``edit``) sit on top of this."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

__all__ = ["device_of", "run_dir_of", "LoadedModel", "load_for_sampling", "GuidanceChoice", "guidance_from_config"]

def device_of(name: str) -> torch.device:
    """``auto`` (CUDA when available) | ``cpu`` | ``cuda`` | ``gpu``."""
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    if name not in ("auto", "cpu"):
        return torch.device(name)
    return torch.device("cpu")


def run_dir_of(ckpt_path) -> Path:
    """The run directory of a checkpoint (``<run_dir>/checkpoints/x.ckpt`` → ``<run_dir>``)."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


class LoadedModel(NamedTuple):
    """A module loaded for sampling and the :class:`~diffzoo.samplers.SamplerSpec` it will run."""

    module: Any
    sampler: Any


def load_for_sampling(ckpt_path, sampler_cfg, device) -> LoadedModel:
    """Load ``ckpt_path`` on ``device`` and resolve its sampler: the stored one, with the settings of
    ``sampler_cfg`` changed (``sampler.steps=50``) or replaced by a whole sampler (``sampler=ddim``);
    checked against the model's forward process."""
    from .lit.build import load_module
    from .samplers import SamplerSpec

    module = load_module(ckpt_path).to(device)
    if not hasattr(module, "denoiser"):
        raise ConfigError(f"{ckpt_path} holds a {type(module).__name__}, which does not sample through a denoiser "
                          "(train a generative model: experiment=ddpm_*, sde_*, ncsn_*, ...)")
    override = OmegaConf.to_container(sampler_cfg, resolve=True) if isinstance(sampler_cfg, DictConfig) else sampler_cfg
    spec = SamplerSpec.resolve(module.sampler, override)
    module.check_sampler(spec)
    return LoadedModel(module, spec)


class GuidanceChoice(NamedTuple):
    """The guidance of a config (``None`` for none) with its short name and scale."""

    guidance: Any
    name: str | None
    scale: float | None


def guidance_from_config(cfg: DictConfig, module, sampler) -> GuidanceChoice:
    """Instantiate ``cfg.guidance`` on the module's device (``guidance=none`` / absent: no guidance),
    checked against the model and the sampler (ADM's mean form needs ``sampler=ddpm``)."""
    if not cfg.get("guidance"):
        return GuidanceChoice(None, None, None)
    from hydra.utils import instantiate

    from .guidance import NoGuidance
    from .lit.guidance_loading import check_guidance_fits

    missing = [k for k in cfg.guidance if OmegaConf.is_missing(cfg.guidance, k)]
    if missing:
        raise ConfigError(f"guidance.{missing[0]} must be set: guidance.{missing[0]}=PATH, a checkpoint of diffzoo-train "
                          f"experiment={'noised_clip_<data>' if missing[0] == 'clip_ckpt' else 'adm_classifier_<data>'}")
    guidance = instantiate(OmegaConf.to_container(cfg.guidance, resolve=True))
    if isinstance(guidance, NoGuidance):
        return GuidanceChoice(None, None, None)
    check_guidance_fits(guidance, module)
    if getattr(guidance, "form", "eps") == "mean" and not sampler.takes_mean_shift:
        raise ConfigError(f"guidance.form=mean is ADM's ancestral mean shift (Algorithm 1) and needs sampler=ddpm, not "
                          f"sampler={sampler.name}; use guidance.form=eps with this sampler")
    guidance.wrap(module.denoiser())  # refuses what cannot work (CFG on a model never trained unconditionally)
    return GuidanceChoice(guidance.to(module.device), guidance.name, float(guidance.scale))
