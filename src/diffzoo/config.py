"""Hydra glue: OmegaConf resolvers, the stable run id and run directory, the W&B sweep group.

Run ids are stable, never timestamps: a requeued or re-run job finds its own run dir (and its
``last.ckpt``) again. See :func:`stable_run_id`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = [
    "CONFIG_DIR", "RUN_DIR_ENV", "RUN_MANAGEMENT_KEYS", "compose_config", "register_resolvers", "resolve_run_dir",
    "hydra_runtime", "stable_run_id", "slurm_job_id", "sweep_group", "wandb_offline",
]

CONFIG_DIR = str(Path(__file__).parent / "conf")
RUN_DIR_ENV = "DIFFZOO_RUN_DIR"  # set by rank 0 so that every DDP rank uses its run dir
# Keys that say *where / how* a run is managed, not *what* it trains: they do not change the run id
# (also listed in hydra.job.config.override_dirname.exclude_keys, conf/hydra/default.yaml).
RUN_MANAGEMENT_KEYS = ("run_id", "run_dir", "ckpt_path", "resume", "hparams_search")


def compose_config(config_name: str = "train", overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """Compose a shipped config (``train``, ``sample``, ``eval``, ``ddim_table``, ``edit``, …) with
    command-line style ``overrides``, as the entry points would — for scripts, notebooks and tests."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def slurm_job_id() -> str | None:
    """``<array job>_<task>`` for SLURM array jobs, ``<job id>`` for plain ones, else ``None``.
    SLURM keeps the id when it requeues a job, so it is stable across preemptions."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None and os.environ.get("SLURM_ARRAY_TASK_ID") is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def stable_run_id(run_id=None, name: str = "", what: str = "") -> str:
    """The run's id: ``run_id`` when given; else a hash of the experiment ``name`` and ``what``
    identifies the run (its command-line overrides, run-management keys left out), prefixed by
    ``slurm<job id>-`` under SLURM. The same command gives the same id, so it finds its run dir."""
    if run_id not in (None, "", "null"):
        return str(run_id)
    digest = hashlib.sha1(f"{name}\n{what}".encode()).hexdigest()[:10]
    job = slurm_job_id()
    return f"slurm{job}-{digest}" if job else digest


def sweep_group(name: str) -> str:
    """W&B group: ``<name>/<sweep dir name>`` for the jobs of a Hydra multirun, else ``name``."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return f"{name}/{Path(str(HydraConfig.get().sweep.dir)).name}"
    except (ImportError, ValueError):  # pragma: no cover - no Hydra context
        pass
    return str(name)


def wandb_offline() -> bool:
    """W&B runs offline unless credentials are present (``WANDB_API_KEY``) or ``WANDB_MODE=online``."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    return not os.environ.get("WANDB_API_KEY")


def log_ratio(a, b) -> float:
    """``ln(a / b)``, for constants that follow from others (``${diffzoo.log_ratio:${schedule.sigma_max},
    ${schedule.sigma_min}}``: NCSN++'s time input ``log σ(t) − log σ_min = t · ln(σ_max/σ_min)``)."""
    import math

    return math.log(float(a) / float(b))


def register_resolvers() -> None:
    """Register ``${diffzoo.wandb_offline:}``, ``${diffzoo.run_id:run_id,name,overrides}``,
    ``${diffzoo.sweep_group:name}`` and ``${diffzoo.log_ratio:a,b}`` (idempotent)."""
    for name, fn in (("diffzoo.wandb_offline", wandb_offline), ("diffzoo.run_id", stable_run_id),
                     ("diffzoo.sweep_group", sweep_group), ("diffzoo.log_ratio", log_ratio)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


def hydra_runtime():
    """Hydra's runtime config (``hydra.*``) inside a Hydra job, else ``None``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get() if HydraConfig.initialized() else None
    except ImportError:  # pragma: no cover - no Hydra
        return None


def _config_identity(cfg: DictConfig) -> str:
    """What identifies a run composed without Hydra's command line (``compose`` API): its
    unresolved config, run-management keys left out."""
    data = OmegaConf.to_container(cfg, resolve=False)
    for key in RUN_MANAGEMENT_KEYS:
        data.pop(key, None)
    return OmegaConf.to_yaml(OmegaConf.create(data))


def resolve_run_dir(cfg: DictConfig) -> Path:
    """Choose the run directory once; write it into ``cfg.run_dir`` and the id into ``cfg.run_id``.

    Priority: ``run_dir=`` from the command line; the directory rank 0 chose (environment, for
    DDP ranks started after it); Hydra's output dir (``<paths.log_dir>/<name>/<run_id>`` for a
    single run, ``<sweep dir>/<job number>`` for a multirun job); else, without Hydra,
    ``<paths.log_dir>/<name>/<run_id>``. The run id is :func:`stable_run_id` of the command-line
    overrides (Hydra) or of the config (``compose`` API) — never a timestamp.
    """
    hydra_cfg = hydra_runtime()
    if hydra_cfg is not None:
        run_id = stable_run_id(cfg.get("run_id"), cfg.name, hydra_cfg.job.override_dirname)
    else:
        run_id = stable_run_id(cfg.get("run_id"), cfg.name, _config_identity(cfg))
    chosen = cfg.get("run_dir") or os.environ.get(RUN_DIR_ENV)
    if not chosen and hydra_cfg is not None:
        chosen = hydra_cfg.runtime.output_dir
    if not chosen:
        chosen = str(Path(cfg.paths.log_dir) / cfg.name / run_id)
    run_dir = Path(chosen).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        cfg.run_id = run_id
        for key in ("data_dir", "log_dir", "cache_dir"):
            if key in cfg.paths:
                cfg.paths[key] = str(Path(cfg.paths[key]).expanduser().resolve())
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir
