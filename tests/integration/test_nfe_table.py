"""The NFE table (``python -m diffzoo.nfe_table``) on a tiny checkpoint: rows = samplers (names or
configs with options), columns = budgets, the NFE each cell spent, shared noise, one-line errors."""

import json

import pytest

from diffzoo.config import compose_config
from diffzoo.errors import ConfigError
from diffzoo.nfe_table import nfe_table, table_rows
from tests.integration.test_eval_cli import write_tiny_checkpoint


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "diffzoo-metrics-cache"


def _cfg(ckpt, out, cache, *extra):
    return compose_config(config_name="nfe_table", overrides=[
        f"ckpt_path={ckpt}", "n=12", "batch_size=12", "nfe=[2,4]", "samplers=[ddim,{name:ddpm,variance:fixedsmall,label:ancestral}]",
        "metrics=[fid]", "classifier.epochs=2", "accelerator=cpu", "progress=false", f"out={out}", f"paths.cache_dir={cache}", *extra])


def test_nfe_table_rows_columns_and_nfe(tmp_path, shared_cache):
    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    summary = nfe_table(_cfg(ckpt, tmp_path / "t", shared_cache))
    table = json.loads((tmp_path / "t" / "table.json").read_text())
    assert [r["label"] for r in table["rows"]] == ["ddim", "ancestral"] and table["steps"] == [2, 4]
    assert table["rows"][1]["sampler"]["variance"] == "fixedsmall"
    for cell in table["cells"]:
        assert cell["nfe"] == cell["steps"], cell["row"]  # both spend one evaluation per step
        fid = next(r for r in cell["records"] if r["metric"] == "fid")
        assert fid["sampler"] == ("ddim" if cell["row"] == "ddim" else "ddpm") and fid["nfe"] == cell["steps"]
    md = (tmp_path / "t" / "table.md").read_text()
    fid_rows = md.split("## fid_digits12")[1].split("##")[0].strip().splitlines()
    assert fid_rows[0] == "| sampler \\ NFE | 2 | 4 |" and [r.split("|")[1].strip() for r in fid_rows[2:]] == ["ddim", "ancestral"]
    assert "| ancestral | 2 | 4 |" in md.split("## NFE spent")[1]
    assert all(p.endswith(".png") for p in summary["plots"])


def test_bad_rows_and_budgets_are_one_line_errors(tmp_path, shared_cache):
    with pytest.raises(ConfigError, match="not one of"):
        table_rows(["no_such_sampler"])
    with pytest.raises(ConfigError, match="sampler.bogus is not an option"):
        table_rows([{"name": "ddim", "bogus": 1}])
    with pytest.raises(ConfigError, match="appears twice"):
        table_rows(["ddim", "ddim"])
    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")  # T = 100
    with pytest.raises(ConfigError, match="nfe="):
        nfe_table(_cfg(ckpt, tmp_path / "a", shared_cache, "nfe=[0,4]"))
    with pytest.raises(ConfigError, match="does not fit"):
        nfe_table(_cfg(ckpt, tmp_path / "a", shared_cache, "nfe=[1000]"))
