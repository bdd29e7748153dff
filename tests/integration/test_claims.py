"""``python -m diffzoo.claims --quick``: every registered claim runs end to end through the normal
experiments with tiny budgets, the report is written, and a second run reuses the trained runs."""

import json
from pathlib import Path

import pytest

from diffzoo.claims import CLAIMS, run_claims
from diffzoo.claims.runner import main


# The fast suite runs one claim of each kind (a trained 2-D toy, a closed form, a trained digits model and
# its figures); every claim runs in the slow test below and in `make claims QUICK=1`.
FAST_CLAIMS = ["ncsn_annealed_langevin", "ddpm_prior_term", "ddim_reconstruction"]


def test_quick_report_runs_a_claim_of_each_kind(tmp_path, capsys):
    _check_quick_report(tmp_path, capsys, FAST_CLAIMS)


@pytest.mark.slow
def test_quick_report_runs_every_claim(tmp_path, capsys):
    _check_quick_report(tmp_path, capsys, [])


def _check_quick_report(tmp_path, capsys, names):
    out, runs = tmp_path / "report", tmp_path / "runs"
    assert main([*names, "--quick", "--out", str(out), "--runs", str(runs)]) == 0
    report = json.loads((out / "claims.json").read_text())
    rows = {r["name"]: r for r in report["claims"]}
    names = names or list(CLAIMS)
    assert set(rows) == set(names)
    for name, row in rows.items():
        assert row["verdict"] in ("held", "partly", "not"), (name, row.get("error"))
        assert row["criteria"] and len(row["outcomes"]) == len(row["criteria"]), name
        for key in row["shown"]:
            assert key in row["values"], (name, key)
        for figure in row["figures"]:
            assert figure.endswith(".png") and Path(figure).is_file() and Path(figure).parent == out / "claims", figure
    text = (out / "claims.md").read_text()
    assert "## Summary" in text and "## Not re-runnable on a CPU" in text
    for name in names:
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
