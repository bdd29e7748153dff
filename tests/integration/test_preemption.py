"""kill -TERM mid-run, then the same command again: the run resumes from the last.ckpt saved at the
signal, ends with the weights of an uninterrupted run, and stays the same W&B (offline) run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from diffzoo.errors import ConfigError
from diffzoo.train import train
from tests.helpers import REPO, TINY, compose_train

KILL_AT = 6  # not a multiple of the periodic checkpoint interval: only the SIGTERM save has this step


def make_pacer(marker: str, pause_at: int = -1):
    """A test callback: at step ``pause_at`` (first time only) write ``marker`` and wait until the
    trainer has received SIGTERM, so the test kills the run at a known step."""

    class _Pacer(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step != pause_at or Path(marker).exists():
                return
            Path(marker).write_text(str(trainer.global_step))
            deadline = time.time() + 60
            while not trainer.received_sigterm and time.time() < deadline:
                time.sleep(0.05)

    return _Pacer()


def _command(run_id: str, marker: Path, pause_at: int) -> list[str]:
    return [sys.executable, "-m", "diffzoo.train", "experiment=ddpm_toy2d", "logger=wandb", "trainer.max_steps=12",
            "trainer.log_every_n_steps=1", "final_samples=0", "callbacks.evaluation=null",
            "callbacks.sample_grid.every_n_steps=1000000", "callbacks.model_checkpoint.every_n_train_steps=4",
            "+callbacks.pacer._target_=tests.integration.test_preemption.make_pacer",
            f"+callbacks.pacer.marker={marker}", f"+callbacks.pacer.pause_at={pause_at}", f"run_id={run_id}"]


def _env(tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "DIFFZOO_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("DIFFZOO_RUN_DIR", None)
    return env


def _wandb_ids(run_dir: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*"))


def test_sigterm_saves_and_rerun_resumes_bit_exact(tmp_path):
    env, marker = _env(tmp_path), tmp_path / "paused"
    cmd = _command("killed", marker, KILL_AT)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    straight = subprocess.run(_command("straight", tmp_path / "unused", -1), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    deadline = time.time() + 90
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by a signal at step 6" in err, err[-3000:]
    assert straight.returncode == 0, straight.stderr[-3000:]

    run_dir = tmp_path / "runs" / "ddpm_toy2d" / "killed"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == KILL_AT
    first_wandb_id = saved["diffzoo"]["wandb_run_id"]
    assert _wandb_ids(run_dir) == [first_wandb_id]

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {run_dir}" in again.stdout and "(step 6)" in again.stdout, again.stdout[-3000:]

    a = torch.load(tmp_path / "runs" / "ddpm_toy2d" / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():  # raw and EMA weights
        assert torch.equal(value, b["state_dict"][key]), key
    # the same W&B run before and after the resume (a second offline segment with the same id)
    assert b["diffzoo"]["wandb_run_id"] == first_wandb_id
    assert _wandb_ids(run_dir) == [first_wandb_id, first_wandb_id]



def test_rerun_of_a_finished_run_trains_nothing_and_says_so(tmp_path, capsys):
    overrides = TINY + ["experiment=ddpm_toy2d", "run_id=r1"]
    first = train(compose_train(overrides))
    run_dir = tmp_path / "runs" / "ddpm_toy2d" / "r1"  # <paths.log_dir>/<name>/<run_id>
    mtime = (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    capsys.readouterr()
    again = train(compose_train(overrides))
    out = capsys.readouterr().out
    assert "already finished" in out and "step 3" in out and "run_id=r1 trainer.max_steps=<more>" in out
    assert again == first
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns == mtime  # not retrained

    with pytest.raises(ConfigError, match="resume=never, but .* already holds last.ckpt"):
        train(compose_train(overrides + ["resume=never"]))
    with pytest.raises(ConfigError, match="resume=must, but .* holds no checkpoint"):
        train(compose_train(overrides[:-1] + ["run_id=r2", "resume=must"]))


def test_run_id_is_stable_and_ignores_run_management_keys(monkeypatch):
    from diffzoo.config import stable_run_id

    a = stable_run_id(None, "ddpm_digits", "seed=1")
    assert a == stable_run_id(None, "ddpm_digits", "seed=1") and len(a) == 10
    assert a != stable_run_id(None, "ddpm_digits", "seed=2")
    assert stable_run_id("mine", "ddpm_digits", "seed=1") == "mine"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert stable_run_id(None, "ddpm_digits", "seed=1") == f"slurm4242-{a}"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "17")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert stable_run_id(None, "ddpm_digits", "seed=1") == f"slurm17_3-{a}"
