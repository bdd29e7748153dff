"""``diffzoo-train``: compose the config, build data / model / trainer, fit, summarise.

    diffzoo-train experiment=ddpm_digits trainer.max_steps=500 seed=1
    diffzoo-train experiment=ddpm_cifar10 trainer=ddp trainer.devices=8
    diffzoo-train run_dir=runs/my_run ckpt_path=last        # resume (or requeue) a run

``train(cfg)`` is importable; ``main`` only decorates it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from . import config as _config  # registers resolvers
from .config import RUN_DIR_ENV, resolve_run_dir
from .errors import run_reporting_errors

__all__ = ["train", "main"]


def _instantiate_dict(node) -> list:
    from hydra.utils import instantiate

    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def _attach_wandb_id(cfg: DictConfig, resume_from: Path | None) -> None:
    """Re-attach a resumed run to its W&B run: the id is stored in the checkpoint."""
    if resume_from is None or not cfg.get("logger") or "wandb" not in cfg.logger:
        return
    from .checkpoints import load_checkpoint

    run_id = (load_checkpoint(resume_from).get("diffzoo") or {}).get("wandb_run_id")
    if run_id:
        with open_dict(cfg):
            cfg.logger.wandb.id = run_id
            cfg.logger.wandb.resume = "allow"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temporary file and an atomic rename (readers never see half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=float))
    os.replace(tmp, path)


# Lightning notices that are expected here and would only alarm: the EMA copy is kept in eval mode
# on purpose, the data modules offer held-out loaders for metrics without a validation_step, and
# a deprecation inside Lightning itself.
_EXPECTED_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",
    r"You passed in a `val_dataloader` but have no `validation_step`",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as configured; return the final metrics (also in ``metrics.json``)."""
    import warnings

    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    import lightning as L
    from hydra.utils import instantiate

    from .checkpoints import check_state_dict_compatible, load_checkpoint, resolve_ckpt_path
    from .lit.build import build_module

    run_dir = resolve_run_dir(cfg)
    is_rank_zero = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
    started_env = RUN_DIR_ENV not in os.environ or is_rank_zero
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        resume_from = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir)
        _attach_wandb_id(cfg, resume_from)
        if is_rank_zero:
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

        datamodule = instantiate(cfg.data)
        model = build_module(cfg, tuple(datamodule.data_shape))
        if resume_from is not None:
            check_state_dict_compatible(model, load_checkpoint(resume_from)["state_dict"], resume_from)

        loggers = _instantiate_dict(cfg.get("logger"))
        callbacks = _instantiate_dict(cfg.get("callbacks"))
        trainer: L.Trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir)
        )
        for lg in loggers:
            if type(lg).__name__ == "WandbLogger" and trainer.is_global_zero:
                model.wandb_run_id = lg.experiment.id
                lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

        trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)

        if not trainer.is_global_zero:
            return {}
        metrics = _final_metrics(trainer, model)
        samples_path = _final_samples(cfg, trainer, model, run_dir, metrics)
        metrics_path = run_dir / "metrics.json"
        write_json_atomic(metrics_path, metrics)
        _print_summary(run_dir, metrics, samples_path, metrics_path)
        for lg in loggers:
            lg.log_metrics({f"final/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=trainer.global_step)
            lg.finalize("success")
        return metrics
    finally:
        if started_env:
            os.environ.pop(RUN_DIR_ENV, None)


def _final_metrics(trainer, model) -> dict[str, Any]:
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    metrics: dict[str, Any] = {
        "step": int(trainer.global_step),
        "num_parameters": int(model.num_parameters()),
        **{k.replace("/", "_"): v for k, v in logged.items()},
    }
    # Every evaluation metric with its full setup (n, sampler, NFE, weights, reference-stats hash).
    records = [r.as_dict() for cb in trainer.callbacks for r in getattr(cb, "last_records", [])]
    if records:
        metrics["eval_records"] = records
    return metrics


def _final_samples(cfg, trainer, model, run_dir: Path, metrics: dict) -> Path | None:
    """Draw ``cfg.final_samples`` with EMA weights and save the PNG. ``final_sample_steps``
    respaces the sampler (Improved DDPM §4); ``fast_dev_run``, a wiring check, uses 10 steps."""
    import torch

    from .utils.images import save_samples_figure
    from .utils.random import derive_seed

    n = int(cfg.get("final_samples", 0) or 0)
    if n <= 0 or not hasattr(model, "sample"):
        return None
    steps = cfg.get("final_sample_steps")
    if trainer.fast_dev_run:
        n, steps = min(n, 4), steps or 10
    nfe = {"n": 0}
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "final"))
    x = model.sample(n, generator=gen, steps=steps, progress=True, callback=lambda d: nfe.__setitem__("n", d["nfe"]))
    reference = None
    if x.ndim == 2:
        dm = trainer.datamodule
        reference = dm.train_dataset_tensor()[:2000] if hasattr(dm, "train_dataset_tensor") else None
        if reference is not None and tuple(reference.shape[1:]) != tuple(x.shape[1:]):
            reference = None  # e.g. posterior draws of θ over 1-D observations: nothing to overlay
    path = save_samples_figure(x, run_dir / "samples" / "final.png", reference=reference, title=f"{cfg.name}: {n} samples")
    torch.save({"samples": x.cpu()}, run_dir / "samples" / "final.pt")
    sampler = (cfg.get("sampler") or {}).get("_target_", type(model).__name__).rsplit(".", 1)[-1]
    metrics.update(final_samples=n, sampler=sampler, nfe=nfe["n"], weights="ema" if getattr(model, "ema", None) is not None else "raw")
    return path


def _print_summary(run_dir: Path, metrics: dict, samples: Path | None, metrics_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"diffzoo run finished — {run_dir}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in sorted(metrics.items()):
        if isinstance(v, (list, dict)):
            continue
        table.add_row(k, f"{v:.5g}" if isinstance(v, float) else str(v))
    table.add_row("checkpoints", str(run_dir / "checkpoints"))
    if samples:
        table.add_row("samples", str(samples))
    table.add_row("metrics", str(metrics_path))
    table.add_row("config", str(run_dir / "config.yaml"))
    Console(stderr=False).print(table)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    metrics = run_reporting_errors(train, cfg)
    return metrics.get("train_loss") if metrics else None


def main() -> None:
    """Console entry point ``diffzoo-train``."""
    _hydra_main()


if __name__ == "__main__":
    main()
