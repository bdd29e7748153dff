"""Guidance end to end: CFG and classifier training runs, guided diffzoo-sample, the scale sweep."""

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from diffzoo.sample import sample
from tests.helpers import compose_train, run_cli, train_tiny


@pytest.fixture(scope="module")
def cfg_ckpt(tmp_path_factory):
    return train_tiny("cfg_digits", tmp_path_factory.mktemp("cfg_run"), "net.base_channels=16")


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cls_run")
    train_tiny("adm_classifier_digits", run_dir, "net.base_channels=16", "net.num_head_channels=16")
    return run_dir


def _cfg(ckpt, out, guidance=None, **kw):
    base = {"ckpt_path": str(ckpt), "n": 6, "seed": 0, "batch_size": 4, "use_ema": True, "out": str(out),
            "sampler": {"steps": 10}, "device": "cpu", "y": None}
    if guidance:
        base["guidance"] = guidance
    return OmegaConf.create({**base, **kw})


def test_cfg_experiments_compose_with_condition_dropout():
    for exp, p in [("cfg_digits", 0.2), ("cfg_fashion_mnist", 0.1), ("cfg_cifar10", 0.1)]:
        cfg = compose_train([f"experiment={exp}"])
        assert cfg.model.conditional and cfg.model.cond_drop_prob == p and cfg.net.num_classes == 10
    cls = compose_train(["experiment=adm_classifier_fashion_mnist"])
    assert cls.objective is None and cls.sampler is None and cls.model._target_.endswith("NoisyClassifierModule")


def test_classifier_logs_accuracy_per_t_range(classifier_run):
    header = (next(classifier_run.glob("**/metrics.csv"))).read_text().splitlines()[0]
    assert {"train/acc_t0-249", "train/acc_t750-999", "train/loss"} <= set(header.split(","))


def test_guided_sampling_writes_a_class_grid_and_is_batch_size_invariant(cfg_ckpt, tmp_path):
    g = {"_target_": "diffzoo.guidance.ClassifierFreeGuidance", "scale": 3.0}
    a = sample(_cfg(cfg_ckpt, tmp_path / "a", g, batch_size=4))
    sample(_cfg(cfg_ckpt, tmp_path / "b", g, batch_size=6))
    npz_a, npz_b = np.load(tmp_path / "a" / "samples.npz"), np.load(tmp_path / "b" / "samples.npz")
    assert np.array_equal(npz_a["images"], npz_b["images"]) and npz_a["y"].tolist() == [0, 1, 2, 3, 4, 5]
    assert a["guidance"] == "cfg" and a["guidance_scale"] == 3.0 and a["nfe"] == 10
    unguided = sample(_cfg(cfg_ckpt, tmp_path / "c", None, y=[2, 5]))  # a conditional model gets labels unguided too
    assert np.load(unguided["npz"])["y"].tolist() == [2, 5, 2, 5, 2, 5] and "guidance" not in unguided


def test_sample_cli_with_classifier_guidance_and_one_class(cfg_ckpt, classifier_run, tmp_path):
    ckpt = classifier_run / "checkpoints" / "last.ckpt"
    proc = run_cli("diffzoo.sample", [f"ckpt_path={cfg_ckpt}", "n=3", "y=7", f"out={tmp_path / 's'}",
                                      "guidance=classifier", f"guidance.classifier_ckpt={ckpt}", "guidance.scale=2",
                                      "guidance.form=mean", "sampler=ddpm", "sampler.steps=5"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.load(tmp_path / "s" / "samples.npz")["y"].tolist() == [7, 7, 7]


def test_mean_form_needs_the_ancestral_sampler(cfg_ckpt, classifier_run, tmp_path):
    ckpt = classifier_run / "checkpoints" / "last.ckpt"
    proc = run_cli("diffzoo.sample", [f"ckpt_path={cfg_ckpt}", "n=2", "y=1", f"out={tmp_path / 's'}", "guidance=classifier",
                                      f"guidance.classifier_ckpt={ckpt}", "guidance.form=mean", "sampler=ddim", "sampler.steps=5"],
                   cwd=tmp_path)
    assert proc.returncode == 2 and "guidance.form=mean" in proc.stderr and "needs sampler=ddpm" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_guidance_errors_name_the_key(cfg_ckpt, tmp_path):
    g = {"_target_": "diffzoo.lit.load_classifier_guidance", "classifier_ckpt": "???", "scale": 1.0, "form": "eps"}
    with pytest.raises(ValueError, match="guidance.classifier_ckpt must be set"):
        sample(_cfg(cfg_ckpt, tmp_path / "x", g))
    with pytest.raises(Exception, match="not a noise-aware classifier"):  # (wrapped by hydra.instantiate)
        sample(_cfg(cfg_ckpt, tmp_path / "x", {**g, "classifier_ckpt": str(cfg_ckpt)}))


@pytest.mark.slow
def test_scale_sweep_multirun_writes_the_tradeoff_table_and_plot(cfg_ckpt, tmp_path):
    out = tmp_path / "sweep"
    proc = run_cli("diffzoo.guidance_sweep", ["--multirun", f"ckpt_path={cfg_ckpt}", "guidance=cfg", "guidance.scale=0,2", "n=20",
                                              "batch_size=20", "sampler.steps=5", "classifier.epochs=1", "is_splits=2",
                                              f"sweep_dir={out}", f"paths.cache_dir={tmp_path / 'cache'}",
                                              f"paths.log_dir={tmp_path / 'runs'}", "progress=false"], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "tradeoff.json").read_text())["rows"]
    assert [r["scale"] for r in rows] == [0.0, 2.0]
    assert {"fid_digits20", "is_digits20", "target_accuracy"} <= set(rows[0])
    assert (out / "tradeoff.png").is_file() and "| scale |" in (out / "tradeoff.md").read_text()
