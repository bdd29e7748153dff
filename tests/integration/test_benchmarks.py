"""``make bench`` runs end to end (at smoke sizes) and writes its tables; speed is never asserted."""

from __future__ import annotations

import json

import pytest

from tests.helpers import REPO, run_cli

pytest.importorskip("diffusers")


def test_bench_smoke_writes_every_section(tmp_path):
    proc = run_cli("benchmarks.run", ["--smoke", "--out", str(tmp_path)], cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "cpu-smoke.json").read_text())
    titles = [s["title"] for s in data["sections"]]
    assert any(t.startswith("Training step") for t in titles)
    assert any(t.startswith("Sampling") for t in titles)
    assert any(t.startswith("Sampler overhead") for t in titles)
    assert any(t.startswith("Activation memory") for t in titles)
    for section in data["sections"]:
        baseline = [r for r in section["rows"] if r["name"] == section["baseline"]]
        assert len(baseline) == 1 and baseline[0]["ratio"] == pytest.approx(1.0)
        assert all(r["value"] > 0 for r in section["rows"])
    quality = data["quality_per_nfe"]["rows"]
    assert {"DDPM σ²=β", "DDIM η=0", "PC Euler–Maruyama", "annealed Langevin"} <= set(quality)
    assert (tmp_path / "quality_per_nfe.png").stat().st_size > 0
    assert "ratio vs bare PyTorch loop" in proc.stdout
    edm = data["edm_vs_ddpm"]
    assert set(edm["curves"]) == {"ddpm_digits", "edm_digits"} and all(edm["seconds_per_step"].values())
    assert all(rows and rows[-1]["step"] == 2 for rows in edm["curves"].values())
    assert (tmp_path / "edm_vs_ddpm.png").stat().st_size > 0
