"""Timing discipline shared by every benchmark: variants run interleaved in one process, several
repeats, medians, and every figure reported as a ratio against a baseline measured alongside it."""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

__all__ = ["Measurement", "Section", "interleave", "sync", "machine_info", "write_json", "print_sections"]


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for queued GPU work so that wall-clock timers measure it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@dataclass
class Measurement:
    """One row: ``value`` (median over repeats) in ``unit``, and its ratio to the section baseline."""

    name: str
    value: float
    unit: str
    samples: list[float] = field(default_factory=list)
    ratio: float | None = None  # value / baseline value (time: < 1 is faster than the baseline)
    note: str = ""


@dataclass
class Section:
    """A table: rows measured against the row named ``baseline``.

    ``higher_is_better`` tells how to read ratios (throughput vs time/memory)."""

    title: str
    baseline: str
    rows: list[Measurement] = field(default_factory=list)
    higher_is_better: bool = False
    notes: list[str] = field(default_factory=list)

    def add(self, m: Measurement) -> None:
        self.rows.append(m)

    def finish(self) -> "Section":
        base = next((r for r in self.rows if r.name == self.baseline), None)
        for r in self.rows:
            r.ratio = r.value / base.value if base and base.value else None
        return self


def interleave(variants: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every variant ``warmup`` times (discarded), then ``repeats`` rounds in which each variant
    runs once, in rotating order (no variant always runs first, after a cache-cold switch). Each call
    returns its own measurement (e.g. seconds per step). Returns the list of measurements per name."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            out[name].append(float(variants[name]()))
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object], device="cpu") -> float:
    """Seconds ``fn()`` takes (GPU work included)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    return info


def write_json(path: Path, sections: list[Section], extra: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine_info(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **(extra or {}),
            "sections": [asdict(s) for s in sections]}
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def print_sections(sections: list[Section]) -> None:
    """One rich table per section: value, unit, ratio to the baseline, note."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for s in sections:
        better = "higher is better" if s.higher_is_better else "lower is better"
        table = Table(title=f"{s.title}  (ratio vs {s.baseline}; {better})", title_justify="left")
        for col in ("variant", "median", "unit", "ratio", "note"):
            table.add_column(col, justify="right" if col in ("median", "ratio") else "left")
        for r in s.rows:
            ratio = "—" if r.ratio is None else ("1 (baseline)" if r.name == s.baseline else f"{r.ratio:.3f}")
            table.add_row(r.name, _fmt(r.value), r.unit, ratio, r.note)
        console.print(table)
        for note in s.notes:
            console.print(f"  [dim]{note}[/dim]")
