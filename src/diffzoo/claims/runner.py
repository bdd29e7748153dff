"""Run registered claims and write the report.

    python -m diffzoo.claims                       # every claim, full budgets (~1 h on 2 CPU cores) → docs/claims.md
    python -m diffzoo.claims ddim_eta_ordering     # one claim (or several names)
    python -m diffzoo.claims --quick               # tiny budgets, same code (the test suite's run)
    python -m diffzoo.claims --list                # the registered claims and their criteria

Trained runs go to ``<runs>/`` (default ``runs/claims``, ``runs/claims_quick`` for ``--quick``) and
are reused by config hash; the report goes to ``--out`` (default ``docs`` for a full run, which also
rewrites the README's summary block; ``runs/claims_quick/report`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

__all__ = ["run_claims", "main"]


def _machine() -> str:
    import torch

    return f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def _full_scale_rows() -> list[dict[str, Any]]:
    from ..config import compose_config
    from ..reproduce import training_cost
    from .registry import FULL_SCALE

    rows, costs = [], {}
    for f in FULL_SCALE:
        if f.experiment not in costs:
            cost = training_cost(compose_config("train", [f"experiment={f.experiment}"]))
            text = f"{cost['steps']:,} steps × batch {cost['global_batch']} = {cost['images'] / 1e6:.1f}M images"
            if "eflop" in cost:
                text += f"; {cost['eflop']:.2f} EFLOP ≈ {cost['hours_at_100_tflops']:.0f} h at 100 TFLOP/s"
            costs[f.experiment] = text
        rows.append({"paper": f.paper, "statement": f.statement, "where": f.where, "experiment": f.experiment,
                     "command": f.command, "cost": costs[f.experiment]})
    return rows


def _run_one(claim, ctx) -> dict[str, Any]:
    from .criteria import verdict

    row: dict[str, Any] = {"name": claim.name, "paper": claim.paper, "statement": claim.statement, "where": claim.where,
                           "criteria": [c.text for c in claim.criteria]}
    t0 = time.perf_counter()
    try:
        result = claim.check(ctx)
        outcomes = [c.evaluate(result.values) for c in claim.criteria]
    except Exception as e:  # one failing check must not lose the others' results
        row.update(verdict="error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(), seconds=time.perf_counter() - t0,
                   shown=[], values={})
        return row
    used = [n for c in claim.criteria for n in (getattr(c, "a", None), getattr(c, "b", None)) if isinstance(n, str)]
    row.update(
        setting=result.setting, note=result.note, figures=[_relative(p) for p in result.figures],
        values={k: {"value": v.value, "se": v.se} for k, v in result.values.items()},
        shown=list(claim.shown or dict.fromkeys(used)),
        outcomes=[{"criterion": o.criterion, "outcome": o.outcome, "margin": o.margin, "z": None if math.isinf(o.z) else o.z}
                  for o in outcomes],
        verdict=verdict(outcomes), seconds=time.perf_counter() - t0,
    )
    return row


def _merge_previous(path: Path, rows: list[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """The rows of an earlier report at ``path`` (same budget kind) with ``rows`` replacing theirs by
    name: re-running one claim updates its row and keeps the others (each row keeps its ``date``)."""
    if not path.is_file():
        return rows
    previous = json.loads(path.read_text())
    if bool(previous.get("quick")) != quick:
        return rows
    fresh = {r["name"]: r for r in rows}
    merged = [fresh.pop(r["name"], r) for r in previous.get("claims", [])]
    return merged + list(fresh.values())


def run_claims(names: Sequence[str] = (), quick: bool = False, out: Path | None = None, runs_dir: Path | None = None,
               cache_dir: Path | None = None, seed: int = 0, readme: Path | None = None, command: str = "python -m diffzoo.claims") -> dict[str, Any]:
    """Run the claims ``names`` (all when empty); write ``claims.json``, ``claims.md`` and the figures
    to ``out`` (and the summary into ``readme`` when given); return the report. Named claims replace
    their rows in an existing report in ``out`` and keep the others."""
    from ..config import compose_config
    from ..errors import ConfigError
    from ..utils.io import write_json_atomic
    from . import papers  # noqa: F401  (registers the claims)
    from .context import Context
    from .registry import CLAIMS, PAPERS
    from .report import format_markdown, update_readme

    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise ConfigError(f"unknown claim(s) {unknown}; registered: {sorted(CLAIMS)}")
    order = list(PAPERS)
    chosen = sorted((CLAIMS[n] for n in (names or CLAIMS)), key=lambda c: order.index(c.paper))  # stable within a paper
    default_root = Path("runs") / ("claims_quick" if quick else "claims")
    out = Path(out or (default_root / "report" if quick else "docs")).resolve()
    runs_dir = Path(runs_dir or default_root / "runs").resolve()
    if cache_dir is None:
        cache_dir = Path(compose_config("train", []).paths.cache_dir)
    ctx = Context(quick=quick, figures_dir=out / "claims", runs_dir=runs_dir, cache_dir=Path(cache_dir).resolve(), seed=seed)
    rows = []
    for i, claim in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {claim.paper}: {claim.name} …", flush=True)
        row = _run_one(claim, ctx)
        rows.append(row)
        shown = ", ".join(f"{k} = {row['values'][k]['value']:.4g}" for k in row["shown"][:4] if k in row["values"])
        print(f"[{i}/{len(chosen)}] {claim.name}: {row['verdict']} ({row['seconds'] / 60:.1f} min) {shown or row.get('error', '')}",
              flush=True)
    for row in rows:
        row["date"] = datetime.date.today().isoformat()
    rows = _merge_previous(out / "claims.json", rows, quick) if names else rows
    command += " --quick" if quick and "--quick" not in command else ""
    report = {
        "command": command, "merged": bool(names), "quick": quick,
        "date": datetime.date.today().isoformat(), "machine": _machine(), "seed": seed,
        "minutes": sum(r["seconds"] for r in rows) / 60, "claims": rows, "full_scale": _full_scale_rows(),
        "runs": [{"experiment": r.experiment, "run_dir": _relative(r.run_dir), "steps": r.steps, "reused": r.reused} for r in ctx.runs],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "claims.json", report)
    (out / "claims.md").write_text(format_markdown(report, out))
    if readme is not None and readme.is_file():
        update_readme(readme, report, link=os.path.relpath(out / "claims.md", readme.parent))
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("held", "partly", "not", "error")}
    print(f"\n{len(rows)} claims in {report['minutes']:.1f} min: {counts['held']} held, {counts['partly']} partly, "
          f"{counts['not']} not, {counts['error']} errors\n  report:  {out / 'claims.md'}\n  json:    {out / 'claims.json'}\n"
          f"  figures: {out / 'claims'}\n  runs:    {runs_dir}")
    return report


def _relative(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (reports carry no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m diffzoo.claims [names…] [--quick] [--out DIR] [--list]``; exit status 1 if a check failed to run."""
    from ..errors import user_facing_errors

    parser = argparse.ArgumentParser(prog="python -m diffzoo.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="claims to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets through the same code (minutes)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: docs, or runs/claims_quick/report)")
    parser.add_argument("--runs", type=Path, default=None, help="trained runs, reused by config hash (default: runs/claims[_quick]/runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the claims and their criteria, run nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    from . import papers  # noqa: F401
    from .registry import CLAIMS

    if args.list:
        for c in CLAIMS.values():
            print(f"{c.name:32s} {c.paper:10s} {c.where}\n{'':43s}criteria: " + "; ".join(x.text for x in c.criteria))
        return 0
    readme = Path("README.md") if not args.quick and args.out is None else None
    try:
        report = run_claims(args.names, quick=args.quick, out=args.out, runs_dir=args.runs, seed=args.seed, readme=readme,
                            command="python -m diffzoo.claims" + (" " + " ".join(args.names) if args.names else ""))
    except user_facing_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if any(r["verdict"] == "error" for r in report["claims"]) else 0

