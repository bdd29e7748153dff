"""The DDIM table (``python -m diffzoo.ddim_table``) on a tiny checkpoint: files, table shape,
NFE per cell equal to S, and sample noise seeded per global sample index (batch size does not
change any cell)."""

import json

import numpy as np
import pytest

from diffzoo.config import compose_config
from diffzoo.ddim_table import SIGMA_HAT, ddim_table
from diffzoo.errors import ConfigError
from tests.integration.test_eval_cli import write_tiny_checkpoint

STEPS = [2, 4]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "diffzoo-metrics-cache"


def _cfg(ckpt, out, cache, *extra):
    return compose_config(config_name="ddim_table", overrides=[
        f"ckpt_path={ckpt}", "n=16", "steps=[2,4]", "etas=[0.0,1.0]", "sigma_hat=true", "metrics=[fid,kid]", "kid.subsets=5",
        "classifier.epochs=2", "accelerator=cpu", "progress=false", "save_samples=true", f"out={out}", f"paths.cache_dir={cache}", *extra])


def test_ddim_table_files_shape_nfe_and_seeding(tmp_path, shared_cache):
    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    a = ddim_table(_cfg(ckpt, tmp_path / "a", shared_cache, "batch_size=16"))
    out = tmp_path / "a"
    for name in ("table.md", "table.json", "fid_digits16_vs_nfe.png", "kid_digits16_vs_nfe.png"):
        assert (out / name).is_file(), name

    table = json.loads((out / "table.json").read_text())
    assert [r["label"] for r in table["rows"]] == ["0.0", "1.0", SIGMA_HAT] and table["steps"] == STEPS
    assert len(table["cells"]) == 3 * len(STEPS)
    for cell in table["cells"]:
        assert cell["nfe"] == cell["steps"]  # DDIM: one network evaluation per step, from the sampler's callback
        assert np.isfinite(cell["values"]["fid_digits16"])
        fid = next(r for r in cell["records"] if r["metric"] == "fid")
        assert fid["sampler"] == "ddim" and fid["nfe"] == cell["steps"] and fid["n"] == 16
        assert fid["eta"] == cell["eta"]
    assert {(c["row"], c["steps"]) for c in table["cells"]} == {(r, s) for r in ("eta=0", "eta=1", "sigma_hat") for s in STEPS}

    md = (out / "table.md").read_text()
    fid_table = md.split("## fid_digits16")[1].split("##")[0].strip().splitlines()
    assert fid_table[0] == "| η \\ S | 2 | 4 |" and len(fid_table) == 2 + 3
    assert [line.split("|")[1].strip() for line in fid_table[2:]] == ["0.0", "1.0", SIGMA_HAT]
    nfe_rows = [line for line in md.split("## NFE")[1].split("Setup:")[0].splitlines() if line.startswith("| ") and "\\" not in line]
    assert nfe_rows == ["| 0.0 | 2 | 4 |", "| 1.0 | 2 | 4 |", f"| {SIGMA_HAT} | 2 | 4 |"]

    # Sample i depends only on (seed, i): another batch size gives the same samples in every cell.
    b = ddim_table(_cfg(ckpt, tmp_path / "b", shared_cache, "batch_size=5"))
    for ca, cb in zip(a["cells"], b["cells"]):
        assert np.array_equal(np.load(ca["samples"])["images"], np.load(cb["samples"])["images"]), ca["row"]
        assert ca["values"] == pytest.approx(cb["values"], rel=1e-5)  # features of equal images, batched differently
    samples = {(c["row"], c["steps"]): np.load(c["samples"])["images"] for c in a["cells"]}
    assert not np.array_equal(samples[("eta=0", 4)], samples[("eta=1", 4)])  # η changes the sampler, not the noise seed
    # ... and every cell starts from the same x_T: at η = 0 and at σ̂ the first sample differs from the second
    assert not np.array_equal(samples[("eta=0", 4)][0], samples[("eta=0", 4)][1])


def test_steps_beyond_the_schedule_are_refused(tmp_path, shared_cache):
    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")  # T = 100
    with pytest.raises(ConfigError, match=r"T=100"):
        ddim_table(_cfg(ckpt, tmp_path / "a", shared_cache, "steps=[10,1000]"))
