"""DDIM table pieces without a model: the rows of DDIM Table 1, the markdown layout, the plot."""

import pytest

from diffzoo.ddim_table import SIGMA_HAT, format_markdown, plot_table, table_rows
from diffzoo.errors import ConfigError


def test_rows_follow_ddim_table_1():
    rows = table_rows([0.0, 0.2, 0.5, 1.0], sigma_hat=True)
    assert [r.label for r in rows] == ["0.0", "0.2", "0.5", "1.0", SIGMA_HAT]
    assert [r.key for r in rows] == ["eta=0", "eta=0.2", "eta=0.5", "eta=1", "sigma_hat"]
    assert rows[-1].sigma_hat and rows[-1].eta == 0.0  # σ̂ replaces σ_t(η); the sampler needs η = 0
    assert [r.label for r in table_rows([0.25], sigma_hat=False)] == ["0.25"]


@pytest.mark.parametrize("etas, sigma_hat", [([1.5], True), ([-0.1], False), ([], False)])
def test_bad_rows_are_refused(etas, sigma_hat):
    with pytest.raises(ConfigError):
        table_rows(etas, sigma_hat)


def _table():
    rows = table_rows([0.0, 1.0], sigma_hat=True)
    cells = [{"row": r.key, "label": r.label, "eta": r.eta, "sigma_hat": r.sigma_hat, "steps": s, "nfe": s,
              "values": {"fid_digits1k": 10.0 * (i + 1) / s}} for i, r in enumerate(rows) for s in (10, 100)]
    return {"ckpt_path": "/x/last.ckpt", "step": 5, "n": 1000, "seed": 0, "weights": "ema", "skip": "uniform", "clip_x0": False,
            "T": 1000, "steps": [10, 100], "metrics": ["fid_digits1k"], "reference": {"split": "train", "n": 1500, "hash": "abc"},
            "rows": [{"key": r.key, "label": r.label, "eta": r.eta, "sigma_hat": r.sigma_hat} for r in rows], "cells": cells}


def test_markdown_has_rows_eta_and_columns_steps(tmp_path):
    md = format_markdown(_table())
    fid = md.split("## fid_digits1k")[1].split("##")[0].strip().splitlines()
    assert fid == ["| η \\ S | 10 | 100 |", "|---|---|---|", "| 0.0 | 1 | 0.1 |", "| 1.0 | 2 | 0.2 |", f"| {SIGMA_HAT} | 3 | 0.3 |"]
    assert "## NFE" in md and "| 1.0 | 10 | 100 |" in md
    path = plot_table(_table(), "fid_digits1k", tmp_path / "p.png")
    assert path.stat().st_size > 1000
