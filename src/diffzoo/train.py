"""``diffzoo-train``: compose the config, build data / model / trainer, fit, summarise.

    diffzoo-train experiment=ddpm_digits trainer.max_steps=500 seed=1
    diffzoo-train experiment=ddpm_cifar10 trainer=ddp trainer.devices=8
    diffzoo-train --multirun seed=0,1 optimizer.lr=1e-4,2e-4     # a sweep (hydra/launcher=...)
    diffzoo-train run_id=my_run          # the same command again resumes runs/<name>/my_run

The run dir is ``<paths.log_dir>/<name>/<run_id>`` with a stable id (no timestamp): a killed,
preempted or requeued command re-run as it was resumes from ``last.ckpt`` (``resume=auto``).
``train(cfg)`` is importable; ``main`` only decorates it.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from . import config as _config  # noqa: F401  (registers resolvers)
from .config import RUN_DIR_ENV, resolve_run_dir
from .errors import ConfigError, run_reporting_errors
from .utils.io import write_json_atomic
from .utils.run_lock import RunDirLock, is_launch_rank_zero

__all__ = ["train", "main", "PREEMPTED_EXIT_CODE"]

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: the run stopped early, saved last.ckpt, and can be resumed


def _instantiate_dict(node) -> list:
    from hydra.utils import instantiate

    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def _attach_wandb_id(cfg: DictConfig, ckpt: dict | None) -> None:
    """Re-attach a resumed run to its W&B run: the id is stored in the checkpoint."""
    if ckpt is None or not cfg.get("logger") or "wandb" not in cfg.logger:
        return
    run_id = (ckpt.get("diffzoo") or {}).get("wandb_run_id")
    if run_id:
        with open_dict(cfg):
            cfg.logger.wandb.id = run_id
            cfg.logger.wandb.resume = "allow"


# Lightning notices that are expected here and would only alarm: the EMA copy is kept in eval mode
# on purpose, the data modules offer held-out loaders for metrics without a validation_step, and
# a deprecation inside Lightning itself.
_EXPECTED_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",
    r"You passed in a `val_dataloader` but have no `validation_step`",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"You have overridden `on_after_batch_transfer` in `LightningModule`",  # the channels_last hook
)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as configured; return the final metrics (also in ``metrics.json``).

    Resumes from the run dir's own ``last.ckpt`` per ``resume`` (see
    :func:`diffzoo.checkpoints.plan_resume`); a run that already reached ``trainer.max_steps``
    is not trained again (it says so and returns its metrics). On SIGTERM / a requeue signal it
    saves ``last.ckpt`` and exits with :data:`PREEMPTED_EXIT_CODE`.
    """
    import warnings

    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .checkpoints import check_model_kind, check_state_dict_compatible, load_checkpoint, plan_resume
    from .callbacks.checkpoint_io import AtomicCheckpointIO
    from .lit.build import build_module
    from .lit.fast_paths import apply_fast_paths
    from .validation import validate_config

    validate_config(cfg)
    run_dir = resolve_run_dir(cfg)
    is_rank_zero = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
    started_env = RUN_DIR_ENV not in os.environ or is_rank_zero
    loggers: list = []
    exit_code = 1
    lock = None
    try:
        lock = RunDirLock.acquire(run_dir) if is_launch_rank_zero() else None  # one process per run dir
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        plan = plan_resume(cfg.get("resume", "auto"), cfg.get("ckpt_path"), run_dir)
        ckpt = load_checkpoint(plan.path) if plan.path is not None else None
        resume_step = int(ckpt.get("global_step", 0)) if ckpt is not None and plan.own else None
        if plan.own and _finished(cfg, ckpt):
            return _already_finished(run_dir, int(ckpt["global_step"]), is_rank_zero)
        if is_rank_zero:
            print(f"diffzoo: {plan.message}" + (f" (step {ckpt['global_step']})" if plan.own else ""), flush=True)
        _attach_wandb_id(cfg, ckpt if plan.own else None)
        if is_rank_zero:
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

        datamodule = instantiate(cfg.data)
        model = build_module(cfg, tuple(datamodule.data_shape))
        apply_fast_paths(model, cfg.get("perf"))
        if ckpt is not None:
            check_model_kind(ckpt, OmegaConf.select(cfg, "model._target_"), plan.path)
            check_state_dict_compatible(model, ckpt["state_dict"], plan.path)
        del ckpt

        loggers[:] = _instantiate_dict(cfg.get("logger"))
        for lg in loggers:
            if hasattr(lg, "resume_step"):  # keep the interrupted run's rows before the checkpoint
                lg.resume_step = resume_step
        callbacks = _instantiate_dict(cfg.get("callbacks"))
        trainer: L.Trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO()],  # checkpoints replaced atomically next to themselves
        )
        if trainer.is_global_zero:
            for lg in loggers:
                if type(lg).__name__ == "WandbLogger":
                    model.wandb_run_id = lg.experiment.id
                    _log_wandb_config(lg, cfg, run_dir)

        try:
            with _ddp_children_run_this_job(run_dir), _environment_restored():
                trainer.fit(model, datamodule=datamodule, ckpt_path=str(plan.path) if plan.path else None)
        except SIGTERMException:
            _report_preempted(trainer, run_dir, loggers)
            exit_code = PREEMPTED_EXIT_CODE
            raise SystemExit(PREEMPTED_EXIT_CODE) from None

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
        exit_code = 0
        return metrics
    finally:
        if lock is not None:
            lock.release()
        _finish_wandb(loggers, exit_code)
        _end_process_group()
        if started_env:
            os.environ.pop(RUN_DIR_ENV, None)


@contextmanager
def _environment_restored():
    """Undo the variables Lightning's DDP launcher exports (``LOCAL_RANK``, ``MASTER_PORT``, …):
    left behind, the next sweep job in this process would take its ranks as already started."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            if key != RUN_DIR_ENV:
                del os.environ[key]
        os.environ.update({k: v for k, v in before.items() if os.environ.get(k) != v})


def _end_process_group() -> None:
    """Close this run's DDP process group: the next job of a sweep in the same process starts
    its own ranks, and must not find the old group (whose peers have exited) still open."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _finish_wandb(loggers: list, exit_code: int) -> None:
    """End this run's W&B run: the next job of a sweep in the same process (basic launcher) must
    start its own W&B run instead of logging into this one."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish(exit_code=exit_code)


def _finished(cfg: DictConfig, ckpt: dict) -> bool:
    max_steps = int(cfg.trainer.get("max_steps", -1))
    return max_steps > 0 and int(ckpt.get("global_step", 0)) >= max_steps and not cfg.trainer.get("fast_dev_run")


def _already_finished(run_dir: Path, step: int, is_rank_zero: bool) -> dict[str, Any]:
    """A re-run of a finished run: say so, train nothing, return its recorded metrics."""
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {"step": step}
    if is_rank_zero:
        print(f"diffzoo: run {run_dir} already finished: its last checkpoint is at step {step} (trainer.max_steps). "
              f"Nothing to train; metrics: {metrics_path if metrics_path.is_file() else 'none recorded'}. "
              f"To train on here: run_id={run_dir.name} trainer.max_steps=<more>; for a fresh run: a new run_id=.", flush=True)
    return metrics


def _report_preempted(trainer, run_dir: Path, loggers: list) -> None:
    """After SIGTERM / a requeue signal: say where the checkpoint is and how to resume."""
    if not trainer.is_global_zero:
        return
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.mark_preempting()  # W&B shows the run as preempted, not crashed
    last = run_dir / "checkpoints" / "last.ckpt"
    print(f"diffzoo: stopped by a signal at step {trainer.global_step}; saved {last}. "
          "Re-run the same command (or let the cluster requeue it) to resume.", file=sys.stderr, flush=True)


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _log_wandb_config(logger, cfg: DictConfig, run_dir: Path) -> None:
    """The resolved config as flat hyperparameters (``optimizer.lr``: one column each in the
    W&B runs table) and ``config.yaml`` as a ``config`` artifact of the run."""
    import wandb

    logger.log_hyperparams(_flatten(OmegaConf.to_container(cfg, resolve=True)))
    artifact = wandb.Artifact(f"config-{logger.experiment.id}", type="config", metadata={"run_dir": str(run_dir)})
    artifact.add_file(str(run_dir / "config.yaml"), name="config.yaml")
    logger.experiment.log_artifact(artifact)


@contextmanager
def _ddp_children_run_this_job(run_dir: Path):
    """Lightning starts DDP ranks 1.. by re-running this process's command line. Under
    ``--multirun`` that command is the whole sweep (each rank would re-run it and make its own
    dirs), and under submitit it is not ``diffzoo-train`` at all. Give the children this job's own
    command instead: ``python -m diffzoo.train <this job's overrides>`` in run mode, in this run
    dir; they find the dir through ``DIFFZOO_RUN_DIR`` and join this job's process group."""
    from .config import hydra_runtime

    hydra_cfg = hydra_runtime()
    if hydra_cfg is None:
        yield
        return
    from lightning.pytorch.strategies.launchers import subprocess_script

    overrides = [str(o) for o in hydra_cfg.overrides.task]
    config_name = str(hydra_cfg.job.config_name)
    cwd = str(hydra_cfg.runtime.cwd)

    def command(local_rank: int) -> tuple[list[str], str]:
        return ([sys.executable, "-m", "diffzoo.train", f"--config-name={config_name}", *overrides,
                 f'hydra.run.dir="{run_dir}"', f"hydra.job.name=train_ddp_process_{local_rank}",
                 "hydra.output_subdir=null"], cwd)

    original = subprocess_script._hydra_subprocess_cmd
    subprocess_script._hydra_subprocess_cmd = command
    try:
        yield
    finally:
        subprocess_script._hydra_subprocess_cmd = original


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
    """Draw ``cfg.final_samples`` with EMA weights and save the PNG (and ``final.pt``).

    A generative module samples through the one sampling loop with its configured sampler (its
    ``sampler.steps`` sets the NFE budget; ``fast_dev_run``, a wiring check, spends at most 5); a
    classifier shows what it sees (its noised inputs); the SD15 model and SGLD draw their own way."""
    import torch

    from .callbacks.evaluation import fast_dev_run_sampler
    from .utils.images import save_samples_figure
    from .utils.random import derive_seed

    n = int(cfg.get("final_samples", 0) or 0)
    if n <= 0:
        return None
    if trainer.fast_dev_run:
        n = min(n, 4)
    seed = derive_seed(cfg.seed, "final")
    title = f"{cfg.name}: {n} samples"
    if hasattr(model, "denoiser"):
        from .samplers import sample_indices

        spec = fast_dev_run_sampler(model.sampler, model.schedule) if trainer.fast_dev_run else model.sampler
        model.eval()
        if hasattr(model, "preview_samples"):  # a super-resolution stage: it upsamples held-out low-resolution images
            batch = model.preview_samples(range(n), seed, sampler=spec, progress=True)
        else:
            batch = sample_indices(model.denoiser(True), spec, range(n), seed, model.data_shape, device=model.device,
                                   progress=True, labels=_final_labels(model, n))
        x, nfe, sampler = batch.x, batch.nfe, spec.name
    elif hasattr(model, "noised_preview"):  # a classifier: not generative; show its noised inputs
        x = model.noised_preview(n, torch.Generator().manual_seed(seed))
        nfe, sampler, title = 0, "none", f"{cfg.name}: noised inputs, cleanest to noisiest"
    elif hasattr(model, "sample"):
        box = {"n": 0}
        x = model.sample(n, generator=torch.Generator().manual_seed(seed), progress=True,
                         callback=lambda d: box.__setitem__("n", d["nfe"]))
        nfe, sampler = box["n"], type(model).__name__
    else:
        return None
    reference = None
    if x.ndim == 2:
        dm = trainer.datamodule
        reference = dm.train_dataset_tensor()[:2000] if hasattr(dm, "train_dataset_tensor") else None
        if reference is not None and tuple(reference.shape[1:]) != tuple(x.shape[1:]):
            reference = None  # e.g. posterior draws of θ over 1-D observations: nothing to overlay
    path = save_samples_figure(x, run_dir / "samples" / "final.png", reference=reference, title=title)
    torch.save({"samples": x.cpu()}, run_dir / "samples" / "final.pt")
    metrics.update(final_samples=n, sampler=sampler, nfe=nfe, weights=model.weights_label(True) if hasattr(model, "weights_label")
                   else "raw")
    return path


def _final_labels(model, n: int):
    """Labels for the final samples of a class-conditional model (sample i: class i mod K), else ``None``."""
    if not getattr(model, "conditional", False):
        return None
    from .guidance.labels import labels_for_indices, num_classes_of

    return labels_for_indices(range(n), None, num_classes_of(model.net))


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


def optimized_metric(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The final value of ``cfg.optimized_metric`` (``train/loss`` or ``train_loss``: the same
    key) — what a Hydra sweeper such as Optuna optimises. ``None`` on DDP ranks > 0."""
    key = cfg.get("optimized_metric")
    if not key or not metrics:
        return None
    for k in (key, key.replace("/", "_")):
        if isinstance(metrics.get(k), (int, float)):
            return float(metrics[k])
    numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
    raise ConfigError(f"optimized_metric={key!r} is not among the run's final metrics: {', '.join(numeric)}")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    metrics = run_reporting_errors(train, cfg)
    return run_reporting_errors(optimized_metric, cfg, metrics)


def main() -> None:
    """Console entry point ``diffzoo-train``."""
    _hydra_main()


if __name__ == "__main__":
    main()
