"""A CSV logger that keeps the history of a resumed run.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when a new run writes to the same folder, so a
resumed or requeued run (same run dir, by design) would lose every row logged before the stop.
:class:`ResumableCSVLogger` keeps the rows of the steps before ``resume_step`` (set by ``train``
from the checkpoint it resumes) and drops those after it, which the resumed run logs again.
"""

from __future__ import annotations

import csv
import os

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

__all__ = ["ResumableCSVLogger"]


class _KeepingWriter(ExperimentWriter):
    """Keeps ``metrics.csv`` rows with ``step < resume_step`` (all rows when ``None``)."""

    def __init__(self, log_dir: str, resume_step: int | None):
        self._resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if self._resume_step is None or _step(r) < self._resume_step]
        with open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(fields)  # the header save() extends when new keys appear


def _step(row: dict) -> float:
    try:
        return float(row.get("step") or -1)
    except ValueError:
        return -1.0


class ResumableCSVLogger(CSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` whose ``metrics.csv`` survives a resume.

    ``resume_step``: the global step of the checkpoint being resumed; rows logged at or after it
    by the interrupted run are dropped (the resumed run logs those steps again)."""

    resume_step: int | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir, resume_step=self.resume_step)
        return self._experiment
