"""Build a model from a composed config, or from the config stored inside a checkpoint."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..checkpoints import check_state_dict_compatible, load_checkpoint
from ..errors import CheckpointError, ConfigError
from .diffusion import DiffusionModule

__all__ = ["build_module", "load_module", "PARTS"]

# Config groups instantiated separately and handed to the model (``null`` = not used by it).
PARTS = ("net", "schedule", "objective", "sampler")


def build_module(cfg: DictConfig, data_shape: tuple[int, ...] | None = None) -> DiffusionModule:
    """Instantiate the parts ``cfg.net``, ``cfg.schedule`` (the forward process: a discrete
    schedule, an SDE, a σ ladder), ``cfg.objective`` and ``cfg.sampler`` — those that are set —
    and pass them to ``cfg.model``, with ``data_shape`` and ``seed``. Checks that the network fits
    the data shape, naming the keys if not."""
    parts = {group: instantiate(cfg[group]) for group in PARTS if cfg.get(group) is not None}
    if data_shape is not None and "net" in parts:
        _check_net_fits_data(parts["net"], tuple(data_shape), cfg)
    module = instantiate(cfg.model, **parts, data_shape=data_shape, seed=cfg.get("seed", 0))
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    return module


def _check_net_fits_data(net, data_shape: tuple[int, ...], cfg: DictConfig) -> None:
    in_ch = getattr(net, "in_channels", None)
    if len(data_shape) == 3:
        if in_ch is not None and in_ch != data_shape[0]:
            raise ConfigError(
                f"net.in_channels={in_ch} but data '{cfg.data.get('_target_', '?')}' has {data_shape[0]} channels; "
                f"set net.in_channels={data_shape[0]} (and out_channels)"
            )
        size = getattr(net, "image_size", None)
        if size is not None and size != data_shape[1]:
            raise ConfigError(f"net.image_size={size} but the data is {data_shape[1]}x{data_shape[2]}; set net.image_size={data_shape[1]}")
    elif len(data_shape) == 1:
        dim = getattr(net, "dim", in_ch)
        if dim is not None and dim != data_shape[0]:
            raise ConfigError(f"net.dim={dim} but the data has dimension {data_shape[0]}")


def load_module(ckpt_path, use_ema: bool = True, overrides: dict | None = None) -> DiffusionModule:
    """Rebuild a :class:`DiffusionModule` from a checkpoint alone (its stored config) and load its
    raw and EMA weights. ``overrides`` maps top-level config groups to replacements, e.g.
    ``{"sampler": {...}}`` swaps the stored sampler for another one (its keys are not merged)."""
    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt.get("diffzoo") or {}
    if not meta.get("config"):
        raise CheckpointError(f"{ckpt_path} has no diffzoo config; it was not written by diffzoo-train")
    cfg = OmegaConf.create(meta["config"])
    for group, value in (overrides or {}).items():
        cfg[group] = value
    module = build_module(cfg, tuple(meta.get("data_shape") or ()) or None)
    check_state_dict_compatible(module, ckpt["state_dict"], Path(ckpt_path))
    module.load_state_dict(ckpt["state_dict"])
    module.global_step_loaded = int(ckpt.get("global_step", 0))
    return module.eval()
