"""In-training evaluation of a first-stage autoencoder: PSNR, SSIM and rFID of reconstructions of
held-out images (LDM App. D.2, Table 8), through :func:`diffzoo.metrics.reconstruction.evaluate_reconstruction`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..metrics.features import make_extractor
from ..metrics.reconstruction import ReconstructionReport, evaluate_reconstruction
from ..utils.io import write_text_atomic
from .evaluation import PeriodicEvaluation

__all__ = ["ReconstructionEvaluation"]

FAST_DEV_RUN_N = 8


class ReconstructionEvaluation(PeriodicEvaluation):
    """Every ``every_n_steps`` optimizer steps and at the end of training, rank 0 reconstructs the
    first ``n`` held-out images with the module's ``first_stage()`` (EMA weights when kept) and
    publishes ``eval/psnr``, ``eval/ssim`` and ``eval/rfid_<space><n>`` (loggers,
    ``callback_metrics`` — hence ``metrics.json`` — and ``<run_dir>/eval/reconstruction.jsonl``).

    Args:
        extractor: the rFID feature space: ``auto`` / ``classifier`` (the data set's own classifier,
            trained into the cache if missing) / ``inception``, or ``none`` for PSNR / SSIM only.
        cache_dir: classifier cache (default: the run config's ``paths.cache_dir``).
    """

    def __init__(self, every_n_steps: int | None = None, n: int = 1000, at_train_end: bool = True,
                 extractor: str = "auto", batch_size: int = 250, cache_dir: str | None = None, dirpath: str | None = None):
        if n < 2:
            raise ValueError("callbacks.reconstruction.n must be >= 2 (rFID needs a covariance)")
        self.every_n_steps, self.n, self.at_train_end = every_n_steps, int(n), at_train_end
        self.extractor_kind, self.batch_size = extractor, batch_size
        self.cache_dir, self.dirpath = cache_dir, dirpath
        self.last_records: list[ReconstructionReport] = []
        self._images: torch.Tensor | None = None
        self._extractor = None
        self._last_step = -1

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Before training: the held-out images and the feature extractor (training the data set's
        classifier if it is not cached), so a missing piece fails now, not after training."""
        if stage == "fit" and trainer.is_global_zero and self._images is None:
            self._prepare(trainer, pl_module)

    def _prepare(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        n = min(self.n, FAST_DEV_RUN_N) if trainer.fast_dev_run else self.n
        self._images = dm.val_dataset_tensor()[:n]
        if self.extractor_kind != "none":
            run = pl_module.run_config or {}
            cache = self.cache_dir or (run.get("paths") or {}).get("cache_dir") or ".cache/diffzoo"
            self._extractor = make_extractor(self.extractor_kind, run.get("data") or {}, tuple(pl_module.data_shape),
                                             bool(getattr(dm, "is_conditional", False)), cache, device=pl_module.device)

    def evaluate(self, trainer, pl_module) -> ReconstructionReport | None:
        """Measure the reconstructions now; returns the report on rank 0 (``None`` elsewhere)."""
        step = int(trainer.global_step)
        self._last_step = step
        if not trainer.is_global_zero:
            return None
        if self._images is None:
            self._prepare(trainer, pl_module)
        with torch.random.fork_rng(devices=[]):
            report = evaluate_reconstruction(pl_module.first_stage(True), self._images.to(pl_module.device),
                                             self._extractor, self.batch_size)
        self.last_records = [report]
        values = {f"eval/{k}": v for k, v in report.as_metrics().items()}
        for key, value in values.items():
            trainer.callback_metrics[key] = torch.tensor(value, dtype=torch.float64)
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
        out = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        path = out / "reconstruction.jsonl"
        before = path.read_text() if path.is_file() else ""
        write_text_atomic(path, before + json.dumps({"step": step, **report.as_dict()}, default=float) + "\n")
        return report
