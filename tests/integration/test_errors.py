"""Bad input gets one clear line, not a traceback."""

import pytest

from diffzoo.errors import CheckpointError
from diffzoo.train import train
from tests.helpers import TINY, compose_train, run_cli


def _one_clear_line(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]


def test_unknown_experiment_lists_the_valid_ones(tmp_path):
    proc = run_cli("diffzoo.train", ["experiment=ddpm_nope"], cwd=tmp_path)
    _one_clear_line(proc, "experiment/ddpm_nope", "ddpm_digits")


def test_unknown_group_option(tmp_path):
    proc = run_cli("diffzoo.train", ["schedule=quadratic"], cwd=tmp_path)
    _one_clear_line(proc, "schedule/quadratic", "cosine")


def test_missing_dataset_says_what_and_where(tmp_path):
    proc = run_cli("diffzoo.train", ["experiment=ddpm_cifar10", f"paths.data_dir={tmp_path / 'empty'}", "logger=csv"], cwd=tmp_path)
    _one_clear_line(proc, "error:", "CIFAR-10", str(tmp_path / "empty"), "data.download=true")
    assert proc.returncode == 2


def test_nonexistent_checkpoint_path(tmp_path):
    proc = run_cli("diffzoo.train", ["ckpt_path=/no/such/file.ckpt", "logger=csv", f"run_dir={tmp_path / 'r'}"], cwd=tmp_path)
    _one_clear_line(proc, "error:", "ckpt_path=/no/such/file.ckpt", "no such file")


def test_checkpoint_from_another_net(tmp_path):
    small = tmp_path / "small"
    train(compose_train(TINY + ["net.base_channels=32"], run_dir=small))
    ckpt = small / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="different network"):
        train(compose_train(TINY + ["net.base_channels=64", f"ckpt_path={ckpt}"], run_dir=tmp_path / "big"))
    proc = run_cli("diffzoo.sample", [f"ckpt_path={small / 'checkpoints' / 'missing.ckpt'}"], cwd=tmp_path)
    _one_clear_line(proc, "error:", "checkpoint not found")


def test_checkpoint_that_runs_code_on_load_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "x": Evil()}, f)
    proc = run_cli("diffzoo.sample", [f"ckpt_path={path}"], cwd=tmp_path)
    _one_clear_line(proc, "error:", "refusing to load")
    assert "pwned" not in proc.stdout


def test_training_refuses_a_torch_saved_checkpoint_that_runs_code(tmp_path):
    import os

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.ckpt.*possible code execution"):
        train(compose_train(TINY + [f"ckpt_path={path}"], run_dir=tmp_path / "r"))
    assert not (tmp_path / "pwned").exists()
