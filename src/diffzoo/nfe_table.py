"""Sample quality per NFE for any trained checkpoint: rows = samplers, columns = NFE budgets.

    python -m diffzoo.nfe_table ckpt_path=runs/ddpm_digits/.../checkpoints/last.ckpt n=1000
    python -m diffzoo.nfe_table ckpt_path=... samplers=[ddim,dpmpp_2m,{name:ddpm,variance:fixedsmall}] nfe=[5,10,20]

The generalisation of the DDIM table (``python -m diffzoo.ddim_table``, DDIM Table 1's η rows) to
every sampler of :data:`diffzoo.samplers.SAMPLERS`: each row is a sampler config (a name with its
``conf/sampler`` defaults, or ``{name: …, <options>, label: …}``), each column a budget given to it
as ``sampler.steps``; the NFE a cell actually spent is measured by the sampler's callback and
written next to the metric. Cells share their noise (:mod:`diffzoo.sampler_tables`).

Writes ``table.md`` (one samplers × NFE table per metric, then the NFE spent), ``table.json`` and
``<metric>_vs_nfe.png`` to ``<run_dir>/nfe_table/n<n>_seed<s>_<ema|raw>/`` (or ``out=``).
``nfe_table(cfg)`` is importable; ``main`` only decorates it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from . import config as _config  # noqa: F401  (registers resolvers)
from .errors import ConfigError, run_reporting_errors
from .sampler_tables import TableCell, table_out_dir, table_setup, evaluate_cells, grid_markdown, plot_rows

__all__ = ["nfe_table", "table_rows", "format_markdown", "main"]


def _sampler_defaults(name: str) -> dict:
    """``conf/sampler/<name>.yaml`` without ``_target_`` (the defaults a user gets from ``sampler=<name>``)."""
    from .config import CONFIG_DIR

    path = Path(CONFIG_DIR) / "sampler" / f"{name}.yaml"
    if not path.is_file():
        return {"name": name}
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return {k: v for k, v in data.items() if k not in ("_target_", "steps")}


def table_rows(samplers) -> list[tuple[str, str, dict]]:
    """``(key, label, sampler config)`` per row. A row is a sampler name or a mapping with ``name``,
    its options and an optional ``label``; unknown names and options are a ConfigError naming them."""
    from .samplers import SAMPLERS, SamplerSpec
    from .validation.schemas import sampler_option_rule

    rows, seen = [], set()
    for entry in samplers:
        entry = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else entry
        given = {"name": entry} if isinstance(entry, str) else dict(entry)
        name = given.get("name")
        if name not in SAMPLERS:
            raise ConfigError(f"samplers: {name!r} is not one of {sorted(SAMPLERS)}")
        label = str(given.pop("label", "")) or None
        options = {k: v for k, v in given.items() if k not in ("name", "steps")}
        for option, value in options.items():  # the option's annotated type in the sampler (one line, before sampling)
            rule = sampler_option_rule(option, name)
            if rule is not None:
                rule.check(f"samplers: {name}.{option}", value)
        config = {**_sampler_defaults(name), **options, "name": name}
        SamplerSpec(**config)  # validates the options now, before any sampling
        label = label or (name if not options else name + " " + " ".join(f"{k}={v}" for k, v in options.items()))
        key = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)
        if key in seen:
            raise ConfigError(f"samplers: the row {label!r} appears twice")
        seen.add(key)
        rows.append((key, label, config))
    if not rows:
        raise ConfigError("samplers=[] : the table has no rows; give e.g. samplers=[ddim,dpmpp_2m]")
    return rows


def _budgets(cfg: DictConfig) -> list[int]:
    budgets = list(cfg.nfe)
    if not budgets or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in budgets) or len(set(budgets)) != len(budgets):
        raise ConfigError(f"nfe={budgets} must be distinct integers >= 1 (the sampler.steps budget of each column)")
    if int(cfg.n) < 2 or int(cfg.batch_size) < 1:
        raise ConfigError(f"n must be >= 2 and batch_size >= 1, got n={cfg.n}, batch_size={cfg.batch_size}")
    return budgets


def nfe_table(cfg: DictConfig) -> dict[str, Any]:
    """Fill the table configured by ``cfg`` (``conf/nfe_table.yaml``); write ``table.md``, ``table.json``
    and the plots; return what ``table.json`` holds plus the output paths."""
    from .lit.build import load_module
    from .metrics.naming import LIKELIHOOD_METRICS
    from .runtime import device_of
    from .samplers import SamplerSpec
    from .utils.io import write_json_atomic
    from .validation import validate_entry

    validate_entry("nfe_table", cfg)  # types and ranges of every key, before the checkpoint is read
    budgets = _budgets(cfg)
    bad = [m for m in cfg.metrics if m in LIKELIHOOD_METRICS]
    if bad:
        raise ConfigError(f"metrics={list(cfg.metrics)}: {bad} do not depend on the sampler; the table takes sample metrics (fid, kid, is, precision_recall)")
    rows = table_rows(cfg.samplers)
    module = load_module(cfg.ckpt_path).to(device_of(cfg.accelerator))
    if not hasattr(module, "denoiser"):
        raise ConfigError(f"{cfg.ckpt_path} holds a {type(module).__name__}: the NFE table samples a diffusion or score model")
    grid = []
    for key, label, config in rows:
        for budget in budgets:
            spec = SamplerSpec(**config, steps=budget)
            try:
                spec.plan(module.schedule)
            except ValueError as err:  # e.g. more steps than a discrete schedule has, or an adaptive solver
                raise ConfigError(f"samplers: {label} at nfe={budget} does not fit {cfg.ckpt_path}: {err}") from None
            grid.append(TableCell(key, label, budget, spec, {"sampler": spec.describe()}))
    setup = table_setup(cfg)
    out = table_out_dir(cfg, "nfe_table")
    out.mkdir(parents=True, exist_ok=True)
    cells = evaluate_cells(module, module.run_config["data"], setup, grid, cfg.paths.cache_dir, out,
                           save_samples=bool(cfg.save_samples), progress=bool(cfg.progress), description="NFE table")
    names = [r["name"] for r in cells[0]["records"]]
    table = {
        "ckpt_path": str(Path(cfg.ckpt_path).expanduser().resolve()), "step": getattr(module, "global_step_loaded", None),
        "n": setup.n, "seed": setup.seed, "weights": module.weights_label(setup.use_ema), "steps": budgets,
        "rows": [{"key": k, "label": label, "sampler": config} for k, label, config in rows],
        "metrics": names, "reference": cells[0]["records"][0].get("reference", {}), "cells": cells,
    }
    (out / "table.md").write_text(format_markdown(table))
    write_json_atomic(out / "table.json", table)
    plots = [str(plot_rows(table, name, out / f"{name}_vs_nfe.png", title=f"{name} vs NFE", xlabel="NFE (network evaluations)",
                           legend=lambda r: r["label"])) for name in names]
    summary = {**table, "out": str(out), "markdown": str(out / "table.md"), "json": str(out / "table.json"), "plots": plots}
    print(f"NFE table: {len(cells)} cells ({len(rows)} samplers × {len(budgets)} budgets), n = {setup.n} samples each, "
          f"{table['weights']} weights")
    print(format_markdown(table).split("## NFE spent")[0].split("\n", 1)[1].strip())
    print(f"  markdown: {summary['markdown']}\n  json:     {summary['json']}\n  plots:    " + "\n            ".join(plots))
    return summary


def format_markdown(table: dict) -> str:
    """One samplers × NFE-budget table per metric, then the NFE each cell spent, then the setup."""
    parts = [f"# NFE table: {Path(table['ckpt_path']).name} (step {table['step']})\n"]
    for name in table["metrics"]:
        parts.append(f"## {name}\n\n" + grid_markdown(table, "sampler \\ NFE", lambda c, name=name: c["values"].get(name)))
    parts.append("## NFE spent (network evaluations per sample)\n\n" + grid_markdown(table, "sampler \\ NFE", lambda c: c["nfe"]))
    ref = table.get("reference") or {}
    settings = "; ".join(f"{r['label']}: " + ", ".join(f"{k}={v}" for k, v in r["sampler"].items()) for r in table["rows"])
    parts.append(f"Setup: n = {table['n']} samples per cell, seed {table['seed']} (sample i seeded by (seed, i): every cell "
                 f"starts from the same noise), {table['weights']} weights; reference: split {ref.get('split')}, n = {ref.get('n')}, "
                 f"hash {ref.get('hash')}. Samplers: {settings}.\n")
    return "\n".join(parts)


@hydra.main(version_base="1.3", config_path="conf", config_name="nfe_table")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(nfe_table, cfg)


def main() -> None:
    """``python -m diffzoo.nfe_table ckpt_path=…``."""
    _hydra_main()


if __name__ == "__main__":
    main()
