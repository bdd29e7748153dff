"""Hydra glue: OmegaConf resolvers, the run directory, and the config search path."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["CONFIG_DIR", "register_resolvers", "resolve_run_dir", "wandb_offline", "RUN_DIR_ENV"]

CONFIG_DIR = str(Path(__file__).parent / "conf")
RUN_DIR_ENV = "DIFFZOO_RUN_DIR"  # set by rank 0 so that every DDP rank uses its run dir


def wandb_offline() -> bool:
    """W&B runs offline unless credentials are present (``WANDB_API_KEY``) or ``WANDB_MODE=online``."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    return not os.environ.get("WANDB_API_KEY")


def register_resolvers() -> None:
    """Register ``${diffzoo.wandb_offline:}`` (idempotent)."""
    if not OmegaConf.has_resolver("diffzoo.wandb_offline"):
        OmegaConf.register_new_resolver("diffzoo.wandb_offline", wandb_offline)


register_resolvers()


def _hydra_output_dir() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return HydraConfig.get().runtime.output_dir
    except Exception:  # pragma: no cover - no Hydra context
        return None
    return None


def resolve_run_dir(cfg: DictConfig) -> Path:
    """Choose the run directory once and write it into ``cfg.run_dir`` (absolute).

    Priority: ``run_dir=`` from the command line; the directory rank 0 chose (environment, for
    DDP ranks started after it); Hydra's output dir; ``<paths.log_dir>/<name>/<timestamp>``.
    """
    chosen = cfg.get("run_dir") or os.environ.get(RUN_DIR_ENV) or _hydra_output_dir()
    if not chosen:
        chosen = str(Path(cfg.paths.log_dir) / cfg.name / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    run_dir = Path(chosen).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        for key in ("data_dir", "log_dir", "cache_dir"):
            if key in cfg.paths:
                cfg.paths[key] = str(Path(cfg.paths[key]).expanduser().resolve())
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir
