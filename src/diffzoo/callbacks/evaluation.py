"""Sample-quality metrics during training: FID / KID / IS in a small-data feature space (or
SWD / MMD / log-likelihood on toy data), every N steps and at the end, from all ranks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import lightning as L
import torch

from ..metrics.likelihood_eval import LikelihoodSetup
from ..metrics.naming import MetricRecord
from ..metrics.pipeline import EvalInputs, EvalResult, EvalSetup, prepare_evaluation, run_evaluation
from ..utils.io import write_text_atomic

__all__ = ["Evaluation"]

FAST_DEV_RUN_N = 16  # fast_dev_run checks the wiring: few samples, few steps
FAST_DEV_RUN_STEPS = 5
FAST_DEV_RUN_NLL_N = 4


def fast_dev_run_sampler(spec, process):
    """The sampler a ``fast_dev_run`` (a wiring check) uses: the same one on a budget of at most
    :data:`FAST_DEV_RUN_STEPS` network evaluations (at most the two steps PC needs), or, for the
    adaptive ODE, loose tolerances."""
    if spec.adaptive:
        return spec.with_options(rtol=1e-2, atol=1e-2)
    planned = spec.plan(process).nfe
    budget = min(planned, FAST_DEV_RUN_STEPS) if planned else FAST_DEV_RUN_STEPS
    for steps in range(budget, planned + 1 if planned else budget + 1):
        try:
            spec.with_steps(steps).plan(process)
            return spec.with_steps(steps)
        except ValueError:  # too small for this sampler (PC needs two steps)
            continue
    return spec


class PeriodicEvaluation(L.Callback):
    """Calls ``self.evaluate(trainer, pl_module)`` every ``self.every_n_steps`` optimizer steps and,
    with ``self.at_train_end``, once at the end, never twice at one step (``self._last_step``, which
    ``evaluate`` sets)."""

    every_n_steps: int | None = None
    at_train_end: bool = True
    _last_step: int = -1

    def evaluate(self, trainer, pl_module):  # pragma: no cover - abstract
        raise NotImplementedError

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_train_end and trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module)


class Evaluation(PeriodicEvaluation):
    """Every ``every_n_steps`` optimizer steps and when training ends, draw ``n`` samples with the
    EMA weights — every rank its share of the global indices, features gathered (see
    :mod:`diffzoo.metrics.distributed`) — and compute ``metrics`` against the training data.
    Works for discrete-time models and score models (SDE or σ ladder) alike; ``nll_ode`` /
    ``nll_vlb`` add the held-out likelihood (:mod:`diffzoo.metrics.likelihood_eval`).

    Values are logged as ``eval/<name>`` (e.g. ``eval/fid_digits1k``) to every logger and put in
    ``trainer.callback_metrics`` (so the run's closing summary and ``metrics.json`` show them);
    full records (sampler, NFE, reference hash, …) are appended to ``<run_dir>/eval/history.jsonl``
    and the values plotted against the step in ``<run_dir>/eval/metrics_vs_step.png``.

    Args:
        every_n_steps: period in optimizer steps (``None``: only at the end).
        at_train_end: also evaluate when training ends (unless that step was just evaluated).
        n, metrics, seed, batch_size, extractor, backend, reference_split, reference_n, kid_subsets,
            kid_subset_size, is_splits, use_ema, classifier_epochs: see
            :class:`~diffzoo.metrics.pipeline.EvalSetup`.
        sampler: settings that replace the model's own sampler's for evaluation, e.g.
            ``{"steps": 100}`` (its NFE budget: a 1000-step sampler is slow on a CPU), or a whole
            sampler config; ``None`` samples as the model is configured.
        nll: options of the likelihood metrics (:class:`~diffzoo.metrics.likelihood_eval.LikelihoodSetup`).
        cache_dir: where classifiers / reference statistics are cached (default: the run
            config's ``paths.cache_dir``).
        dirpath: output folder (default ``<run_dir>/eval``).
    """

    def __init__(
        self,
        every_n_steps: int | None = 1000,
        at_train_end: bool = True,
        n: int = 1000,
        metrics: Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int = 250,
        sampler: dict | None = None,
        extractor: str = "auto",
        backend: str = "torch-fidelity",
        reference_split: str = "train",
        reference_n: int | None = None,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        use_ema: bool = True,
        classifier_epochs: int | None = None,
        nll: dict | None = None,
        cache_dir: str | None = None,
        dirpath: str | None = None,
    ):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"callbacks.evaluation.every_n_steps must be >= 1 or null, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.at_train_end = at_train_end
        self.sampler = dict(sampler) if sampler else None
        self.setup_args = dict(n=n, metrics=tuple(metrics) if metrics else None, seed=seed, batch_size=batch_size,
                               extractor=extractor, backend=backend, reference_split=reference_split, reference_n=reference_n,
                               kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_splits=is_splits, use_ema=use_ema,
                               classifier_epochs=classifier_epochs, likelihood=LikelihoodSetup(**dict(nll or {})))
        EvalSetup(**self.setup_args)  # validate now, not after hours of training
        self.cache_dir = cache_dir
        self.dirpath = dirpath
        self.last_records: list[MetricRecord] = []
        self._last_step = -1
        self._inputs: EvalInputs | None = None

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer, pl_module, stage: str) -> None:
        """Before training: pick the metrics, build the feature extractor (training the data set's
        classifier if it is not cached) and the reference statistics — so a missing Inception
        file or a bad option fails now, not at the first evaluation."""
        if stage != "fit" or self._inputs is not None or not self._will_run(trainer):
            return
        self._prepare(trainer, pl_module)

    def _will_run(self, trainer) -> bool:
        periodic = self.every_n_steps is not None and (trainer.max_steps < 0 or self.every_n_steps <= trainer.max_steps)
        return self.at_train_end or periodic

    def _prepare(self, trainer, pl_module) -> EvalInputs:
        self._inputs = prepare_evaluation(
            tuple(pl_module.data_shape), self._data_cfg(pl_module), self._setup(trainer, pl_module), self._cache_dir(pl_module),
            device=trainer.strategy.root_device, datamodule=getattr(trainer, "datamodule", None),
        )
        return self._inputs

    # ------------------------------------------------------------------ work
    def _dir(self, trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "eval"

    def _cache_dir(self, pl_module) -> str:
        if self.cache_dir:
            return self.cache_dir
        paths = (pl_module.run_config or {}).get("paths") or {}
        return paths.get("cache_dir") or ".cache/diffzoo"

    def _data_cfg(self, pl_module) -> dict:
        data_cfg = (pl_module.run_config or {}).get("data")
        if not data_cfg:
            raise ValueError("the Evaluation callback needs the run config's 'data' entry (set by build_module)")
        return data_cfg

    def _setup(self, trainer, pl_module) -> EvalSetup:
        from ..samplers import SamplerSpec

        args = dict(self.setup_args)
        spec = SamplerSpec.resolve(pl_module.sampler, self.sampler)
        if trainer.fast_dev_run:
            args["n"] = min(args["n"], FAST_DEV_RUN_N)
            spec = fast_dev_run_sampler(spec, pl_module.schedule)
            nll = args["likelihood"]
            args["likelihood"] = LikelihoodSetup(**{**nll.__dict__, "n": min(nll.n or FAST_DEV_RUN_NLL_N, FAST_DEV_RUN_NLL_N),
                                                    "steps": min(nll.steps or FAST_DEV_RUN_STEPS, FAST_DEV_RUN_STEPS)})
        return EvalSetup(**args, sampler=spec)

    @torch.no_grad()
    def evaluate(self, trainer, pl_module) -> EvalResult:
        """Run one evaluation on every rank and publish it (logs, ``callback_metrics``, files)."""
        step = int(trainer.global_step)
        inputs = self._inputs or self._prepare(trainer, pl_module)
        with torch.random.fork_rng(devices=[]):  # leave the training RNG as it was
            result = run_evaluation(pl_module, self._data_cfg(pl_module), self._setup(trainer, pl_module), self._cache_dir(pl_module),
                                    datamodule=getattr(trainer, "datamodule", None), step=step, inputs=inputs)
        self._last_step = step
        self.last_records = result.records
        values = {f"eval/{k}": v for k, v in result.values().items()}
        for key, value in values.items():
            trainer.callback_metrics[key] = torch.tensor(value, dtype=torch.float64)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(values, step=step)
            self._write(trainer, result, step)
        return result

    def _write(self, trainer, result: EvalResult, step: int) -> None:
        out = self._dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        history = out / "history.jsonl"
        before = history.read_text() if history.is_file() else ""
        new = "".join(json.dumps(r.as_dict(), default=float) + "\n" for r in result.records)
        write_text_atomic(history, before + new)  # a kill mid-write leaves the old history, never half a line
        _plot_history(out / "history.jsonl", out / "metrics_vs_step.png")


def _plot_history(history: Path, path: Path) -> Path:
    """One panel per metric name: value against training step (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for line in history.read_text().splitlines():
        r = json.loads(line)
        series.setdefault(r["name"], []).append((r["step"], r["value"]))
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3), dpi=100, squeeze=False)
    for ax, (name, points) in zip(axes[0], sorted(series.items())):
        steps, values = zip(*sorted(points))
        ax.plot(steps, values, marker="o")
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
