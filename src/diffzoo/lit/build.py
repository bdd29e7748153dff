"""Build a model from a composed config, or from the config stored inside a checkpoint."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ..checkpoints import check_state_dict_compatible, load_checkpoint
from ..errors import CheckpointError, ConfigError

__all__ = ["build_module", "load_module", "ALL_PARTS", "parts_of"]

# Config groups instantiated separately and handed to the model class that takes them (its PARTS).
ALL_PARTS = ("net", "schedule", "objective", "sampler", "optimizer", "lr_scheduler", "ema", "parameterization",
             "text_encoder", "first_stage")


def parts_of(model_cfg) -> tuple[str, ...]:
    """The part groups the class of ``model_cfg`` takes (its ``PARTS``; none for a class without)."""
    try:
        cls = get_class(str(model_cfg["_target_"]))
    except Exception as err:  # noqa: BLE001 - Hydra's own message is clearer once instantiate runs
        raise ConfigError(f"model._target_={model_cfg.get('_target_')!r} cannot be imported: {err}") from None
    return tuple(getattr(cls, "PARTS", ()))


def build_module(cfg: DictConfig, data_shape: tuple[int, ...] | None = None):
    """Instantiate the parts the model class takes (its ``PARTS``: ``cfg.net``, ``cfg.schedule`` — the
    forward process —, ``cfg.objective``, ``cfg.sampler``, ``cfg.optimizer``, ``cfg.lr_scheduler``,
    ``cfg.ema`` (``{decay, warmup}``), ``cfg.parameterization``, ``cfg.text_encoder``) and pass them to ``cfg.model``, with
    ``data_shape`` and ``seed``. A part set in the config that the class does not take is an error
    naming it (a classifier has no sampler); the network is checked against the data shape.
    Configs written before the optimizer, EMA and parameterisation had groups of their own hold them
    inside ``cfg.model``; they build the same way."""
    takes = parts_of(cfg.model)
    extra = [g for g in ALL_PARTS if cfg.get(g) is not None and g not in takes]
    if extra:
        raise ConfigError(f"{extra[0]} is set but {str(cfg.model._target_).rsplit('.', 1)[-1]} takes no {extra[0]}; "
                          f"set {extra[0]}=null (it takes {', '.join(takes) or 'no parts'})")
    _refuse_doubly_set(cfg, takes)
    parts = {}
    for group in takes:
        if group == "ema" and cfg.get("ema") is not None:  # {decay, warmup}: the module builds its EMA
            parts.update(ema_decay=cfg.ema.get("decay"), ema_warmup=bool(cfg.ema.get("warmup", False)))
        elif cfg.get(group) is not None:
            parts[group] = instantiate(cfg[group])
    if data_shape is not None and "net" in parts and "first_stage" not in parts:  # a latent model checks its latents
        _check_net_fits_data(parts["net"], tuple(data_shape), cfg)
    module = instantiate(cfg.model, **parts, data_shape=data_shape, seed=cfg.get("seed", 0))
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    return module


# The keys of cfg.model that a part group provides (configs from before the groups set them there).
_PART_KEYS = {"ema": ("ema_decay", "ema_warmup"), "optimizer": ("optimizer",), "lr_scheduler": ("lr_scheduler",),
              "parameterization": ("parameterization",)}


def _refuse_doubly_set(cfg: DictConfig, takes: tuple[str, ...]) -> None:
    """A value set both in ``cfg.model`` and in its group would silently lose one of them: refuse it."""
    for group, keys in _PART_KEYS.items():
        if group not in takes or cfg.get(group) is None:
            continue
        for key in keys:
            if key in cfg.model:
                new = f"ema.{key.removeprefix('ema_')}" if group == "ema" else group
                raise ConfigError(f"model.{key} is set, but {group} is a config group of its own now: set {new}=… instead")


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


def load_module(ckpt_path, overrides: dict | None = None):
    """Rebuild a module from a checkpoint alone (its stored config) and load its raw and EMA
    weights. ``overrides`` maps top-level config groups to replacements, e.g.
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
