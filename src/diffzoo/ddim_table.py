"""DDIM Table 1 for any ε-trained checkpoint: sample quality over steps S × η (and the σ̂ row).

    python -m diffzoo.ddim_table ckpt_path=runs/ddpm_digits/.../checkpoints/last.ckpt n=1000
    python -m diffzoo.ddim_table ckpt_path=... steps=[10,50] etas=[0.0,1.0] sigma_hat=false metrics=[fid,kid]

Every cell samples the checkpoint (EMA weights by default) with :func:`diffzoo.samplers.ddim`
over a sub-sequence of ``S`` steps (DDIM §4.2, ``skip=uniform|quad``) at ``σ_t(η)`` (DDIM eq. 16),
or with DDPM's larger variance on the sub-sequence for the σ̂ row (Table 1), and computes the
metrics in the data set's feature space (Inception for RGB images of ≥ 32 px, the data set's own
classifier for digits / Fashion-MNIST: :mod:`diffzoo.metrics.features`). Sample ``i`` of every
cell starts from the same noise: generator ``(seed, "x_T", i)``, later draws from
``(seed, "steps", i)`` (:func:`diffzoo.metrics.distributed.draw_samples`), so cells differ only
by the sampler and the numbers do not depend on ``batch_size``.

Writes to ``<run_dir>/ddim_table/<n>_seed<s>_<ema|raw>/`` (or ``out=``): ``table.md`` (rows η / σ̂,
columns S, as DDIM Table 1, plus the NFE of every cell), ``table.json`` (every cell with its
records) and ``<metric>_vs_nfe.png`` (one line per row, NFE on a log x axis).
``ddim_table(cfg)`` is importable; ``main`` only decorates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import hydra
from omegaconf import DictConfig

from . import config as _config  # noqa: F401  (registers resolvers)
from .errors import ConfigError, run_reporting_errors
from .sampler_tables import TableCell, table_out_dir, table_setup, evaluate_cells, grid_markdown, plot_rows

__all__ = ["TableRow", "table_rows", "ddim_table", "format_markdown", "plot_table", "main"]

SIGMA_HAT = "σ̂"  # the row label of DDIM Table 1's σ̂ row (JSON key: "sigma_hat")


class TableRow(NamedTuple):
    """One row of the table: its label (``"0.0"``, …, ``"σ̂"``), η and whether it is the σ̂ row."""

    label: str
    eta: float
    sigma_hat: bool

    @property
    def key(self) -> str:
        """ASCII key of the row in ``table.json`` (``"eta=0.2"``, ``"sigma_hat"``)."""
        return "sigma_hat" if self.sigma_hat else f"eta={self.eta:g}"


def table_rows(etas, sigma_hat: bool) -> list[TableRow]:
    """Rows in DDIM Table 1's order: each η (``0 ≤ η ≤ 1``, DDIM eq. 16), then σ̂ if asked for."""
    rows = []
    for eta in etas:
        eta = float(eta)
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"etas: {eta} is not in [0, 1] (DDIM eq. 16)")
        rows.append(TableRow(f"{eta:.1f}" if eta * 10 == int(eta * 10) else f"{eta:g}", eta, False))
    if sigma_hat:
        rows.append(TableRow(SIGMA_HAT, 0.0, True))
    if not rows:
        raise ConfigError("the table has no rows: give etas=[...] and/or sigma_hat=true")
    return rows


def _validate(cfg: DictConfig, T: int | None = None) -> list[int]:
    steps = [int(s) for s in cfg.steps]
    if not steps or any(s < 1 for s in steps) or len(set(steps)) != len(steps):
        raise ConfigError(f"steps={list(cfg.steps)} must be distinct integers >= 1")
    if T is not None and max(steps) > T:
        raise ConfigError(f"steps={steps}: the checkpoint's schedule has T={T} steps; every S must be <= {T}")
    if cfg.skip not in ("uniform", "quad"):
        raise ConfigError(f"skip={cfg.skip!r} is not one of ['uniform', 'quad']")
    if int(cfg.n) < 2 or int(cfg.batch_size) < 1:
        raise ConfigError(f"n must be >= 2 and batch_size >= 1, got n={cfg.n}, batch_size={cfg.batch_size}")
    return steps


def ddim_sampler(row: TableRow, steps: int, skip: str, clip_x0: bool | None):
    """The :class:`~diffzoo.samplers.SamplerSpec` of one cell: DDIM at (S, η), or the σ̂ row."""
    from .samplers import SamplerSpec

    return SamplerSpec("ddim", steps, eta=row.eta, skip=skip, clip_x0=clip_x0, sigma_hat=row.sigma_hat)


def ddim_table(cfg: DictConfig) -> dict[str, Any]:
    """Fill the table configured by ``cfg`` (``conf/ddim_table.yaml``); write ``table.md``,
    ``table.json`` and the plots; return what ``table.json`` holds plus the output paths."""
    from .lit.build import load_module
    from .metrics.naming import LIKELIHOOD_METRICS
    from .runtime import device_of
    from .utils.io import write_json_atomic
    from .validation import validate_entry

    validate_entry("ddim_table", cfg)  # types and ranges of every key, before the checkpoint is read
    _validate(cfg)
    bad = [m for m in cfg.metrics if m in LIKELIHOOD_METRICS]
    if bad:
        raise ConfigError(f"metrics={list(cfg.metrics)}: {bad} do not depend on the sampler; the table takes sample metrics (fid, kid, is, precision_recall)")
    rows = table_rows(cfg.etas, bool(cfg.sigma_hat))
    module = load_module(cfg.ckpt_path).to(device_of(cfg.accelerator))
    if not hasattr(module, "denoiser"):
        raise ConfigError(f"{cfg.ckpt_path} holds a {type(module).__name__}: the DDIM table samples a diffusion or score model")
    steps = _validate(cfg, module.schedule.default_steps)
    setup = table_setup(cfg)
    out = table_out_dir(cfg, "ddim_table")
    out.mkdir(parents=True, exist_ok=True)
    grid = [TableCell(row.key, row.label, s, ddim_sampler(row, s, cfg.skip, cfg.clip_x0), {"eta": row.eta, "sigma_hat": row.sigma_hat})
            for row in rows for s in steps]
    cells = evaluate_cells(module, module.run_config["data"], setup, grid, cfg.paths.cache_dir, out,
                           save_samples=bool(cfg.save_samples), progress=bool(cfg.progress), description="DDIM table")

    names = [r["name"] for r in cells[0]["records"]]
    table = {
        "ckpt_path": str(Path(cfg.ckpt_path).expanduser().resolve()), "step": getattr(module, "global_step_loaded", None),
        "n": setup.n, "seed": setup.seed, "weights": module.weights_label(setup.use_ema), "skip": cfg.skip, "clip_x0": cfg.clip_x0, "T": module.schedule.default_steps, "steps": steps, "rows": [{"key": r.key, "label": r.label, "eta": r.eta, "sigma_hat": r.sigma_hat} for r in rows],
        "metrics": names, "reference": cells[0]["records"][0].get("reference", {}), "cells": cells,
    }
    (out / "table.md").write_text(format_markdown(table))
    write_json_atomic(out / "table.json", table)
    plots = [str(plot_table(table, name, out / f"{name}_vs_nfe.png")) for name in names]
    summary = {**table, "out": str(out), "markdown": str(out / "table.md"), "json": str(out / "table.json"), "plots": plots}
    _print_summary(summary)
    return summary


def format_markdown(table: dict) -> str:
    """The table as markdown: one ``metric`` table (rows η / σ̂, columns S, as DDIM Table 1) per
    metric name, then the NFE of every cell, then the setup."""
    parts = [f"# DDIM table: {Path(table['ckpt_path']).name} (step {table['step']})\n"]
    for name in table["metrics"]:
        parts.append(f"## {name}\n\n" + grid_markdown(table, "η \\ S", lambda c, name=name: c["values"].get(name)))
    parts.append("## NFE (network evaluations per sample)\n\n" + grid_markdown(table, "η \\ S", lambda c: c["nfe"]))
    ref = table.get("reference") or {}
    parts.append(f"Setup: n = {table['n']} samples per cell, seed {table['seed']} (sample i seeded by (seed, i): every cell starts "
                 f"from the same noise), {table['weights']} weights, skip = {table['skip']}, clip_x0 = {_clip(table['clip_x0'], False)} "
                 f"(η rows) / {_clip(table['clip_x0'], True)} (σ̂ row), T = {table['T']}; "
                 f"reference: split {ref.get('split')}, n = {ref.get('n')}, hash {ref.get('hash')}. σ̂: DDPM's σ̂ = √(1 − ᾱ_t/ᾱ_s) "
                 "on the sub-sequence (DDIM Table 1), x̂₀ clipped as the DDIM code's ddpm_steps does.\n")
    return "\n".join(parts)


def _clip(value, paper_default: bool) -> str:
    """How a row clipped x̂₀: the given setting, or the DDIM code's (``null``)."""
    return str(paper_default if value is None else bool(value)).lower()


def plot_table(table: dict, name: str, path: Path) -> Path:
    """``name`` against NFE (log scale), one line per row (η or σ̂), as a PNG."""
    return plot_rows(table, name, path, title=f"DDIM: {name} vs NFE", xlabel="NFE (= steps S)",
                     legend=lambda r: "σ̂" if r["sigma_hat"] else f"η = {r['label']}", dashed=lambda r: r["sigma_hat"])


def _print_summary(summary: dict) -> None:
    print(f"DDIM table: {len(summary['cells'])} cells ({len(summary['rows'])} rows × {len(summary['steps'])} step counts), "
          f"n = {summary['n']} samples each, {summary['weights']} weights")
    print(format_markdown(summary).split("## NFE")[0].split("\n", 1)[1].strip())
    print(f"  markdown: {summary['markdown']}\n  json:     {summary['json']}\n  plots:    " + "\n            ".join(summary["plots"]))


@hydra.main(version_base="1.3", config_path="conf", config_name="ddim_table")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(ddim_table, cfg)


def main() -> None:
    """``python -m diffzoo.ddim_table ckpt_path=…``."""
    _hydra_main()


if __name__ == "__main__":
    main()
