"""The command-line tools end to end: sampling from a checkpoint, W&B offline logging, the
CIFAR-10 reproduction pipeline in smoke mode."""

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from diffzoo.sample import sample
from diffzoo.train import train
from tests.helpers import TINY, compose_train, run_cli


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(compose_train(TINY + ["net.base_channels=32"], run_dir=run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def _sample_cfg(ckpt, out, **kw):
    base = {"ckpt_path": str(ckpt), "n": 6, "seed": 3, "batch_size": 4, "use_ema": True, "out": str(out),
            "device": "cpu", "sampler": {"_target_": "diffzoo.samplers.SamplerSpec", "name": "ddpm", "steps": 50,
                                         "variance": "fixedlarge", "clip_x0": True}}
    base.update(kw)
    return OmegaConf.create(base)


def test_sample_writes_grid_and_uint8_npz_and_is_batch_size_invariant(tiny_checkpoint, tmp_path):
    a = sample(_sample_cfg(tiny_checkpoint, tmp_path / "a", batch_size=4))
    sample(_sample_cfg(tiny_checkpoint, tmp_path / "b", batch_size=6))
    assert (tmp_path / "a" / "grid.png").is_file()
    images_a = np.load(tmp_path / "a" / "samples.npz")["images"]
    images_b = np.load(tmp_path / "b" / "samples.npz")["images"]
    assert images_a.dtype == np.uint8 and images_a.shape == (6, 8, 8, 1)
    assert np.array_equal(images_a, images_b)  # sample i depends only on (seed, i)
    assert a["nfe"] == 50 and a["weights"] == "ema"


def test_sample_cli(tiny_checkpoint, tmp_path):
    proc = run_cli("diffzoo.sample", [f"ckpt_path={tiny_checkpoint}", "n=2", f"out={tmp_path / 's'}", "sampler=ddpm",
                                      "sampler.steps=20", "sampler.variance=fixedsmall"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "s" / "samples.npz").is_file() and "nfe: 20" in proc.stdout
    retired = run_cli("diffzoo.sample", [f"ckpt_path={tiny_checkpoint}", "n=2", "respace=20"], cwd=tmp_path)
    assert retired.returncode == 2 and "respace=20 was retired: use sampler.steps=20" in retired.stderr


def test_wandb_offline_run_is_written_with_sample_images(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith(("logger=", "callbacks.sample_grid"))] + [
        "logger=wandb", "callbacks.sample_grid.every_n_steps=2", "callbacks.sample_grid.n=4"]
    train(compose_train(overrides, run_dir=run_dir))
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    assert (run_dir / "samples" / "step_0000002.png").is_file()


def _reproduce_smoke(tmp_path, *overrides):
    proc = run_cli("diffzoo.reproduce", ["ddpm_cifar10", "--smoke", f"paths.cache_dir={tmp_path / 'cache'}",
                                         f"run_dir={tmp_path / 'run'}", *overrides], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SYNTHETIC" in proc.stdout and "EFLOP" in proc.stdout
    return json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_reproduce_ddpm_cifar_smoke_at_a_cpu_test_width(tmp_path):
    """The recipe's pipeline (synthetic data, cost estimate, 4 steps, metrics) with a narrow U-Net."""
    metrics = _reproduce_smoke(tmp_path, "net.base_channels=32", "net.num_res_blocks=1")
    assert metrics["step"] == 4 and metrics["num_parameters"] < 35_746_307


@pytest.mark.slow  # the paper-size U-Net (35.7M) for 4 CPU steps: ~45-80 s
def test_reproduce_ddpm_cifar_smoke(tmp_path):
    metrics = _reproduce_smoke(tmp_path)
    assert metrics["step"] == 4 and metrics["num_parameters"] == 35_746_307


@pytest.mark.parametrize("script, config_name", [("diffzoo-train", "train"), ("diffzoo-sample", "sample"), ("diffzoo-eval", "eval")])
def test_console_scripts_find_their_configs_from_any_directory(tmp_path, script, config_name):
    """The installed entry points (not ``python -m``) compose their config outside the repo."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / script
    if not exe.exists():
        pytest.skip(f"{script} is not installed next to this Python (pip install -e .)")
    proc = subprocess.run([str(exe), "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ckpt_path" in proc.stdout
