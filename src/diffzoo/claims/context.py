"""What a claim's check gets: its budget (full or quick), where to write figures, and trained runs
reused by config hash.

:meth:`Context.trained` composes ``train.yaml`` with an experiment and overrides exactly as
``diffzoo-train`` would, hashes the resolved config, and trains into ``<runs_dir>/<experiment>-<hash>``
— unless that run already reached its ``trainer.max_steps``, in which case ``diffzoo.train.train``
says so and returns its metrics without training. So a second ``make claims`` reuses every run
whose configuration is unchanged, and a changed config (a new default, another budget) trains anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Context", "TrainedRun", "config_hash"]

# Overrides every claim run gets: no in-training evaluation and no final samples (the checks measure
# afterwards, with their own sample sizes and samplers), a CSV log, no W&B.
RUN_OVERRIDES = ("logger=csv", "callbacks.evaluation=null", "final_samples=0")


def config_hash(cfg) -> str:
    """12 hex digits of the resolved config, without the keys that only say where it runs."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=False)
    for key in ("run_dir", "paths", "hydra", "run_id", "resume", "ckpt_path"):
        data.pop(key, None)
    return hashlib.sha256(repr(sorted(_flatten(data))).encode()).hexdigest()[:12]


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in _flatten(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), repr(data))]


@dataclass
class TrainedRun:
    """A run a claim trained (or reused): its checkpoint, run folder, final metrics and whether it
    was reused from an earlier ``make claims``."""

    experiment: str
    ckpt: Path
    run_dir: Path
    metrics: dict[str, Any]
    reused: bool
    steps: int

    def load(self):
        """The run's LightningModule (EMA and raw weights), on the CPU, in eval mode."""
        from ..lit.build import load_module

        return load_module(self.ckpt).eval()


@dataclass
class Context:
    """Budget and folders of one ``python -m diffzoo.claims`` run.

    Attributes:
        quick: tiny budgets through the same code (the test suite's run).
        figures_dir: where checks write their PNGs.
        runs_dir: trained runs, reused across report runs by config hash.
        cache_dir: the feature classifiers' cache (``paths.cache_dir``).
        seed: the seed of every training run and every draw.
    """

    quick: bool
    figures_dir: Path
    runs_dir: Path
    cache_dir: Path
    seed: int = 0
    runs: list[TrainedRun] = field(default_factory=list)
    _quality: dict = field(default_factory=dict, repr=False)

    def budget(self, full, quick):
        """``quick`` in a quick run, else ``full``."""
        return quick if self.quick else full

    @contextlib.contextmanager
    def threads(self, n: int):
        """Run the block with ``n`` torch threads (small MLPs train faster on one: fewer sync points)."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def figure(self, name: str) -> Path:
        """The path of figure ``name`` (``<name>.png`` in :attr:`figures_dir`)."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / f"{name}.png"

    def trained(self, experiment: str, steps: int, *overrides: str) -> TrainedRun:
        """Train ``experiment=<experiment>`` for ``steps`` steps with ``overrides`` (Hydra syntax) —
        or reuse the run of the same resolved config; return it."""
        from omegaconf import open_dict

        from ..config import compose_config
        from ..train import train

        os.environ.setdefault("WANDB_MODE", "offline")
        args = [f"experiment={experiment}", f"trainer.max_steps={steps}", f"seed={self.seed}", *RUN_OVERRIDES, *overrides,
                f"paths.cache_dir={self.cache_dir}"]
        cfg = compose_config("train", args)
        if cfg.callbacks.get("sample_grid") is not None:  # no image grids every few hundred steps
            with open_dict(cfg):
                cfg.callbacks.sample_grid.every_n_steps = 100_000_000
        run_dir = self.runs_dir / f"{experiment}-{config_hash(cfg)}"
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        reused = ckpt.is_file()
        with open_dict(cfg):
            cfg.run_dir = str(run_dir)
            cfg.callbacks.model_checkpoint.every_n_train_steps = steps
        metrics = train(cfg)
        run = TrainedRun(experiment, ckpt, run_dir, dict(metrics or {}), reused, steps)
        self.runs.append(run)
        return run

    def quality(self, module):
        """The :class:`~diffzoo.claims.measure.SampleQuality` of ``module``'s data set (built once per data set)."""
        from .measure import SampleQuality

        data_cfg = module.run_config["data"]
        key = repr(sorted(data_cfg.items())) if isinstance(data_cfg, dict) else repr(data_cfg)
        if key not in self._quality:
            self._quality[key] = SampleQuality(data_cfg, module.data_shape, self.cache_dir, seed=self.seed,
                                               reference_n=self.budget(None, 300), classifier_epochs=self.budget(None, 1),
                                               bootstrap=self.budget(20, 5))
        return self._quality[key]

    def likelihood(self, run: TrainedRun, metric: str, *overrides: str):
        """``metric`` (``nll_vlb`` / ``nll_ode``, bits/dim on held-out images) of ``run`` through
        ``diffzoo-eval``; a :class:`~diffzoo.claims.criteria.Measured` (mean ± its standard error)."""
        from ..config import compose_config
        from ..evaluate import evaluate
        from .criteria import Measured

        cfg = compose_config("eval", [f"ckpt_path={run.ckpt}", f"metrics=[{metric}]", f"seed={self.seed}", "progress=false",
                                      f"paths.cache_dir={self.cache_dir}", f"out={run.run_dir / 'claims_eval' / metric}", *overrides])
        record = next(r for r in evaluate(cfg)["records"] if r["metric"] == metric)
        return Measured(float(record["value"]), float(record.get("std") or 0.0))
