"""The end of a sweep: one table of every job's final metrics.

``SweepSummary`` is a Hydra callback (registered in ``conf/hydra/default.yaml``): when a
``--multirun`` ends — whatever the launcher (basic, joblib, submitit) or sweeper (Optuna) — it
reads each job's ``metrics.json`` and its overrides, prints a table and writes
``summary.md``, ``summary.csv`` and ``summary.json`` in the sweep dir. A job without
``metrics.json`` (failed, preempted, still running) is listed with its status, not dropped.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = ["SweepSummary", "collect_jobs", "summary_table"]

# Columns shown first when present; then every other scalar metric, alphabetically.
_FIRST = ("step", "train_loss")


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One record per job dir below ``sweep_dir`` (a dir holding ``.hydra/overrides.yaml``):
    ``{"job": relative dir, "overrides": "a=1 b=2", "status": ..., <scalar metrics>}``, where
    ``overrides`` are the job's overrides not shared by every job (the swept values)."""
    files = sorted(sweep_dir.glob("**/.hydra/overrides.yaml"), key=lambda p: _job_sort_key(p, sweep_dir))
    per_job = [[str(o) for o in OmegaConf.load(f)] for f in files]
    shared = set.intersection(*map(set, per_job)) if len(per_job) > 1 else set()
    rows = []
    for overrides_file, overrides in zip(files, per_job):
        job_dir = overrides_file.parent.parent
        swept = " ".join(o for o in overrides if o not in shared)  # what differs between the jobs
        row: dict[str, Any] = {"job": str(job_dir.relative_to(sweep_dir)), "overrides": swept}
        metrics_file = job_dir / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            row["status"] = "done"
            row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
        else:
            ckpt = job_dir / "checkpoints" / "last.ckpt"
            row["status"] = "incomplete (last.ckpt: resumable)" if ckpt.is_file() else "failed / not started"
        rows.append(row)
    return rows


def _job_sort_key(path: Path, sweep_dir: Path):
    rel = path.parent.parent.relative_to(sweep_dir).parts
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in rel)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    keys = {k for row in rows for k in row}
    head = ["job", "overrides", "status", *[k for k in _FIRST if k in keys]]
    return head + sorted(keys - set(head))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return "" if value is None else str(value)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of ``rows`` (one line per job)."""
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(row.get(c)).replace("|", "\\|") for c in cols) + " |" for row in rows]
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback: print and write the sweep's summary table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows = collect_jobs(sweep_dir)
        table = summary_table(rows)
        (sweep_dir / "summary.md").write_text(f"# Sweep {sweep_dir}\n\n{table}\n")
        (sweep_dir / "summary.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_columns(rows), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        (sweep_dir / "summary.csv").write_text(buf.getvalue())
        print(f"\nSweep summary ({len(rows)} jobs) — {sweep_dir / 'summary.md'}\n{table}", flush=True)
