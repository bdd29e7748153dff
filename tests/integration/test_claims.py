"""``python -m diffzoo.claims --quick``: every registered claim runs end to end through the normal
experiments with tiny budgets, the report is written, and a second run reuses the trained runs."""

import json
from pathlib import Path

from diffzoo.claims import CLAIMS, run_claims
from diffzoo.claims.runner import main


def test_quick_report_runs_every_claim(tmp_path, capsys):
    out, runs = tmp_path / "report", tmp_path / "runs"
    assert main(["--quick", "--out", str(out), "--runs", str(runs)]) == 0
    report = json.loads((out / "claims.json").read_text())
    rows = {r["name"]: r for r in report["claims"]}
    assert set(rows) == set(CLAIMS)
    for name, row in rows.items():
        assert row["verdict"] in ("held", "partly", "not"), (name, row.get("error"))
        assert row["criteria"] and len(row["outcomes"]) == len(row["criteria"]), name
        for key in row["shown"]:
            assert key in row["values"], (name, key)
        for figure in row["figures"]:
            assert figure.endswith(".png") and Path(figure).is_file() and Path(figure).parent == out / "claims", figure
    text = (out / "claims.md").read_text()
    assert "## Summary" in text and "## Not re-runnable on a CPU" in text
    for name in CLAIMS:
        assert f"### {name}" in text
    assert len(report["full_scale"]) >= 8 and all(f["cost"] for f in report["full_scale"])
    assert "claims in" in capsys.readouterr().out  # the end-of-run summary

    # one claim again into the same report: its run is reused (same config), its row replaced, the others kept
    again = run_claims(["ncsn_annealed_langevin"], quick=True, out=out, runs_dir=runs)
    assert [r["reused"] for r in again["runs"]] == [True]
    assert [r["name"] for r in again["claims"]] == [r["name"] for r in report["claims"]]
    row = next(r for r in again["claims"] if r["name"] == "ncsn_annealed_langevin")
    assert row["values"] == rows["ncsn_annealed_langevin"]["values"]


def test_unknown_claim_is_a_one_line_error(tmp_path, capsys):
    assert main(["no_such_claim", "--quick", "--out", str(tmp_path)]) == 2
    assert "unknown claim(s) ['no_such_claim']" in capsys.readouterr().err
