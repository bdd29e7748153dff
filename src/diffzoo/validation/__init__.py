"""Config validation at the start of ``train``: unknown keys and impossible values fail in one line
that names the key and what would be valid, before anything is built.

Two checks:

* **keys** — the top level of ``train.yaml`` (its own keys and config groups) and every node with
  a ``_target_``: its keys must be parameters of the target (``trainer.max_step`` → "did you mean
  ``max_steps``"). Hydra already refuses ``key=value`` for a key that does not exist; this catches
  ``+key=value`` typos and keys an experiment file adds by mistake.
* **values** — :data:`VALUE_RULES`, a table of (key, test, what is valid).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..config import CONFIG_DIR
from ..errors import ConfigError
from .schemas import SCHEMAS, resolved, validate_entry

__all__ = ["validate_config", "validate_entry", "SCHEMAS", "VALUE_RULES", "known_top_level_keys", "RETIRED_KEYS", "check_retired_keys"]

# Keys Hydra / OmegaConf use inside a node; never passed to the target.
_HYDRA_NODE_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# Top-level keys the code sets at run time (not in train.yaml).
_RUNTIME_KEYS = {"hydra"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# (dotted key, test, what is valid). A key missing from the config is skipped.
VALUE_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("trainer.max_steps", lambda v: _is_int(v) and (v == -1 or v > 0), "a positive integer, or -1 (no step limit)"),
    ("trainer.log_every_n_steps", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("trainer.gradient_clip_val", lambda v: v is None or (isinstance(v, (int, float)) and v >= 0), "null or >= 0"),
    ("ema.decay", lambda v: v is None or (isinstance(v, (int, float)) and 0.0 <= v < 1.0), "a number in [0, 1)"),
    ("data.batch_size", lambda v: _is_int(v) and v > 0, "a positive integer"),
    ("seed", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("final_samples", lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0"),
    ("resume", lambda v: v in ("auto", "never", "must"), "one of auto, never, must"),
    ("callbacks.model_checkpoint.every_n_train_steps", lambda v: v is None or (_is_int(v) and v > 0), "a positive integer"),
    ("callbacks.nan_guard.action", lambda v: v in ("skip", "stop"), "one of skip, stop"),
    ("callbacks.nan_guard.max_skips", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
]


# Keys an earlier version had, and what replaced them (one name for "how many steps": sampler.steps).
RETIRED_KEYS = {
    "respace": "sampler.steps",
    "sample_steps": "sampler.steps",
    "final_sample_steps": "sampler.steps",
}


def check_retired_keys(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the new key when a retired one is set (its default is null)."""
    for key, new in RETIRED_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            raise ConfigError(f"{key}={value} was retired: use {new}={value} (the NFE budget of every sampler)")


@lru_cache(maxsize=1)
def known_top_level_keys() -> frozenset[str]:
    """Keys ``train.yaml`` defines plus its config groups (``data``, ``net``, …)."""
    primary = OmegaConf.load(Path(CONFIG_DIR) / "train.yaml")
    keys = {k for k in primary if k != "defaults"}
    for entry in primary.get("defaults", []):
        if isinstance(entry, (dict, DictConfig)):
            keys.update(str(k).split("@")[0].split("/")[0].lstrip("+") for k in entry)
    return frozenset(keys - {"_self_"}) | _RUNTIME_KEYS


def _unknown(key: str, where: str, valid) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in RETIRED_KEYS:
        return ConfigError(f"config key '{key}' was retired: use {RETIRED_KEYS[leaf]} (the NFE budget of every sampler)")
    valid = sorted(valid)
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], valid, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return ConfigError(f"unknown config key '{key}' ({where}); {hint}valid keys: {', '.join(valid)}")


@lru_cache(maxsize=None)
def _target_parameters(target: str) -> frozenset[str] | None:
    """Parameter names of ``target`` (a class or function); ``None`` when it takes ``**kwargs``
    or cannot be inspected (its own errors then speak)."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # noqa: BLE001 - an unimportable target fails with Hydra's own message later
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(name for name in sig.parameters if name != "self")


def _check_targets(node, path: str) -> None:
    """Every key of a node with a ``_target_`` is a parameter of the target (``node``: the resolved
    config as plain containers, :func:`~diffzoo.validation.schemas.resolved`)."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str):
            params = _target_parameters(target)
            if params is not None:
                for key in node:
                    if key not in params and key not in _HYDRA_NODE_KEYS:
                        raise _unknown(f"{path}{key}", f"not a parameter of {target}", params)
        for key, value in node.items():
            _check_targets(value, f"{path}{key}.")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _check_targets(item, f"{path}{i}.")


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`~diffzoo.errors.ConfigError` for the first unknown key or impossible value."""
    check_retired_keys(cfg)
    known = known_top_level_keys()
    for key in cfg:
        if key not in known:
            raise _unknown(str(key), "top level of train.yaml", known - _RUNTIME_KEYS)
    data = resolved(cfg)
    _check_targets(data, "")
    for key, ok, valid in VALUE_RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT or isinstance(value, (DictConfig, ListConfig)):
            continue
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is impossible: it must be {valid}")
    t_max = OmegaConf.select(cfg, "lr_scheduler.T_max", default=None)
    if _is_int(t_max) and t_max <= 0:
        raise ConfigError(f"lr_scheduler.T_max={t_max} is impossible: the cosine schedule needs a positive length "
                          "(it follows trainer.max_steps in some experiments; set trainer.max_steps or T_max)")
    wandb = OmegaConf.select(cfg, "logger.wandb", default=None)
    if isinstance(wandb, DictConfig) and wandb.get("log_model") and wandb.get("offline"):
        raise ConfigError(
            f"logger.wandb.log_model={wandb.log_model} needs an online W&B run (set WANDB_API_KEY or run `wandb login`); "
            "offline runs keep their checkpoints in <run_dir>/checkpoints")
    validate_entry("train", cfg, data)  # the type and range of every other key (schemas.SCHEMAS["train"])


_ABSENT = object()
