"""What the sampler-table tools share (``python -m diffzoo.ddim_table``, ``python -m diffzoo.nfe_table``):
one evaluation per cell of a rows × step-budget grid, every cell drawing the same noise, and the
markdown / plot of a metric over the grid.

A cell is a :class:`~diffzoo.samplers.SamplerSpec` with its row (a sampler, or DDIM at one η) and its
column (the ``sampler.steps`` budget). Sample ``i`` of every cell starts from generator
``(seed, "x_T", i)`` and draws its later noise from ``(seed, "steps", i)``
(:func:`diffzoo.samplers.sample_indices`), so cells differ only by the sampler and no number depends
on the batch size. The tools' own layouts (DDIM Table 1's η rows; samplers × NFE) sit on top.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

__all__ = ["TableCell", "table_setup", "table_out_dir", "evaluate_cells", "cell_of", "grid_markdown", "plot_rows"]


class TableCell(NamedTuple):
    """One cell to fill: row ``key`` (ASCII, the JSON key) and ``label`` (shown), the step budget
    ``steps`` (the column), the sampler ``spec`` and ``extra`` fields written into the cell's JSON."""

    key: str
    label: str
    steps: int
    spec: Any
    extra: dict


def table_setup(cfg):
    """The :class:`~diffzoo.metrics.pipeline.EvalSetup` of a sampler table's config (``n``, ``metrics``,
    ``seed``, ``batch_size``, ``use_ema``, the feature extractor and reference; ``sampler`` is per cell)."""
    from .metrics.pipeline import EvalSetup

    return EvalSetup(
        n=int(cfg.n), metrics=tuple(cfg.metrics), seed=int(cfg.seed), batch_size=int(cfg.batch_size), use_ema=bool(cfg.use_ema),
        extractor=cfg.extractor, backend=cfg.backend, reference_split=cfg.reference.split, reference_n=cfg.reference.n,
        kid_subsets=int(cfg.kid.subsets), kid_subset_size=int(cfg.kid.subset_size), classifier_epochs=cfg.classifier.epochs,
        gather_images=bool(cfg.save_samples), progress=False,
    )


def table_out_dir(cfg, folder: str) -> Path:
    """``cfg.out``, or ``<run_dir>/<folder>/n<n>_seed<s>_<ema|raw>`` next to the checkpoint."""
    from .runtime import run_dir_of

    if cfg.get("out"):
        return Path(cfg.out).expanduser().resolve()
    return run_dir_of(cfg.ckpt_path) / folder / f"n{cfg.n}_seed{cfg.seed}_{'ema' if cfg.use_ema else 'raw'}"


def evaluate_cells(module, data_cfg, setup, cells: Sequence[TableCell], cache_dir, out: Path, *, save_samples: bool,
                   progress: bool, description: str) -> list[dict]:
    """Evaluate every cell with :func:`diffzoo.metrics.pipeline.run_evaluation` (the reference statistics
    and feature extractor prepared once for all of them).

    Returns one dict per cell: ``{"row", "label", "steps", "nfe", "values", "records", **extra}`` plus
    ``"samples"`` (an ``.npz`` of uint8 images ``[n, H, W, C]`` in index order) with ``save_samples``.
    """
    import numpy as np
    import torch

    from .metrics.pipeline import prepare_evaluation, run_evaluation
    from .utils.progress import track

    inputs = prepare_evaluation(module.data_shape, data_cfg, setup, cache_dir, module.device)  # once for all cells
    filled = []
    for cell in track(cells, total=len(cells), description=description, enabled=progress):
        with torch.random.fork_rng(devices=[]):
            result = run_evaluation(module, data_cfg, dataclasses.replace(setup, sampler=cell.spec), cache_dir,
                                    step=getattr(module, "global_step_loaded", None), inputs=inputs)
        row = {"row": cell.key, "label": cell.label, **cell.extra, "steps": cell.steps, "nfe": result.nfe,
               "values": result.values(), "records": [r.as_dict() for r in result.records]}
        if save_samples and result.images is not None:
            path = out / "samples" / f"{cell.key}_S{cell.steps}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, images=result.images.permute(0, 2, 3, 1).numpy())
            row["samples"] = str(path)
        filled.append(row)
        if progress:
            print(f"  {cell.label:>12}  steps={cell.steps:<5} NFE={result.nfe:<5} "
                  + "  ".join(f"{k}={v:.4g}" for k, v in result.values().items()))
    return filled


def cell_of(table: dict, row_key: str, steps: int) -> dict:
    """The cell of row ``row_key`` at budget ``steps``."""
    return next(c for c in table["cells"] if c["row"] == row_key and c["steps"] == steps)


def _number(v) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.4g}"


def grid_markdown(table: dict, corner: str, value: Callable[[dict], Any]) -> str:
    """A markdown table: rows ``table["rows"]`` (their ``label``), columns ``table["steps"]``, each
    entry ``value(cell)`` (a number → 4 significant digits, ``–`` when missing)."""
    steps = table["steps"]
    head = f"| {corner} | " + " | ".join(str(s) for s in steps) + " |\n|---|" + "---|" * len(steps) + "\n"
    lines = []
    for r in table["rows"]:
        entries = [value(cell_of(table, r["key"], s)) for s in steps]
        lines.append(f"| {r['label']} | " + " | ".join(_number(v) if isinstance(v, float) or v is None else str(v)
                                                       for v in entries) + " |")
    return head + "\n".join(lines) + "\n"


def plot_rows(table: dict, name: str, path: Path, *, title: str, xlabel: str, legend: Callable[[dict], str],
              dashed: Callable[[dict], bool] = lambda row: False) -> Path:
    """Metric ``name`` against NFE (log x axis), one line per row, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for r in table["rows"]:
        cells = sorted((c for c in table["cells"] if c["row"] == r["key"]), key=lambda c: c["nfe"])
        ax.plot([c["nfe"] for c in cells], [c["values"].get(name, float("nan")) for c in cells], marker="o",
                linestyle="--" if dashed(r) else "-", label=legend(r))
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(name)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
