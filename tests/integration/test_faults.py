"""Nothing lost under faults (issue 20): a full disk in the middle of a checkpoint or ``metrics.json``
write leaves the previous file intact and says so in one line; an interrupted write leaves no half
file; two ``diffzoo-train`` processes on one run dir: the second is refused in one line; ``kill -9``
at random moments of a run that checkpoints every step leaves a loadable ``last.ckpt`` and the re-run
resumes; an evaluation killed at random moments never leaves a half-written ``metrics.json``."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

import diffzoo.utils.io as io_module
from diffzoo.errors import run_reporting_errors
from diffzoo.train import train
from diffzoo.utils.io import WriteFailedError, atomic_file, torch_save_atomic, write_json_atomic
from diffzoo.utils.run_lock import LOCK_NAME
from tests.helpers import REPO, TINY, compose_train

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FillsUp:
    """A file object on a disk that fills up: the first ``room`` bytes are written, then ENOSPC."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.f.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _only_the_file_left(directory: Path, name: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == [name]  # no temporary file left behind


# ---------------------------------------------------------------------- a full disk, an interrupted write
@pytest.mark.parametrize("fails_at", ["write", "fsync"])
def test_a_metrics_write_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch, fails_at):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"fid": 1.5, "step": 10})
    before = path.read_bytes()
    if fails_at == "write":
        real = io_module._open_fd
        monkeypatch.setattr(io_module, "_open_fd", lambda fd, mode: _FillsUp(real(fd, mode), room=20))
    else:  # NFS and friends report a full disk when the data are flushed
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(WriteFailedError) as e:
        write_json_atomic(path, {"fid": 0.5, "step": 20, "records": list(range(500))})
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "No space left on device" in message
    assert "previous metrics.json, if any, is unchanged" in message
    monkeypatch.undo()
    assert path.read_bytes() == before
    _only_the_file_left(tmp_path, "metrics.json")


def test_an_interrupted_write_leaves_the_old_file_or_none(tmp_path):
    """Ctrl-C (or any exception) in the middle of a write: no half file, no temporary file."""
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "metrics.json") as f:
            f.write(b'{"fid": 0.')
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    torch_save_atomic({"w": torch.ones(3)}, tmp_path / "last.ckpt")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "last.ckpt") as f:
            f.write(b"PK\x03\x04")
            raise KeyboardInterrupt
    assert torch.equal(torch.load(tmp_path / "last.ckpt", weights_only=True)["w"], torch.ones(3))
    _only_the_file_left(tmp_path, "last.ckpt")


def test_a_checkpoint_write_on_a_full_disk_keeps_the_previous_one_and_stops_in_one_line(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    overrides = ["experiment=ddpm_toy2d", *TINY]
    train(compose_train([*overrides, "trainer.max_steps=2"], run_dir=run_dir))
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real_open = io_module._open_fd  # a part of the checkpoint reaches the disk, then ENOSPC
    monkeypatch.setattr(io_module, "_open_fd", lambda fd, mode: _FillsUp(real_open(fd, mode), room=1000))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_reporting_errors(train, compose_train([*overrides, "trainer.max_steps=4"], run_dir=run_dir))
    assert e.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and str(run_dir / "checkpoints") in errors[0]
    assert last.read_bytes() == before  # the step-2 checkpoint, untouched
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert not (run_dir / LOCK_NAME).exists()  # released on the way out

    monkeypatch.setattr(io_module, "_open_fd", real_open)  # space again: the same command resumes from step 2
    metrics = train(compose_train([*overrides, "trainer.max_steps=4"], run_dir=run_dir))
    assert metrics["step"] == 4
    assert "resuming" in capsys.readouterr().out
    assert torch.load(last, weights_only=True)["global_step"] == 4


# ---------------------------------------------------------------------- real processes
def make_gate(marker: str, gate: str):
    """A test callback: after the first step, write ``marker`` and wait until ``gate`` exists."""

    class _Gate(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if Path(marker).exists():
                return
            Path(marker).write_text(str(os.getpid()))
            deadline = time.time() + 120
            while not Path(gate).exists() and time.time() < deadline:
                time.sleep(0.05)

    return _Gate()


def _env(tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "DIFFZOO_RUNS_DIR": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1"}
    for key in ("DIFFZOO_RUN_DIR", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        env.pop(key, None)
    return env


def _train_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "diffzoo.train", "experiment=ddpm_toy2d", "logger=csv", "trainer.log_every_n_steps=1",
            "final_samples=0", "callbacks.evaluation=null", "callbacks.sample_grid.every_n_steps=1000000",
            "callbacks.model_checkpoint.every_n_train_steps=1", *extra]


@pytest.mark.slow
def test_a_second_process_on_a_busy_run_dir_is_refused_in_one_line(tmp_path):
    env, marker, gate = _env(tmp_path), tmp_path / "started", tmp_path / "go"
    cmd = _train_command("trainer.max_steps=3", "run_id=busy")
    first = subprocess.Popen([*cmd, "+callbacks.gate._target_=tests.integration.test_faults.make_gate",
                              f"+callbacks.gate.marker={marker}", f"+callbacks.gate.gate={gate}"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not marker.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), first.communicate()[1][-3000:]
        second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        gate.write_text("go")
    out, err = first.communicate(timeout=120)
    run_dir = tmp_path / "runs" / "ddpm_toy2d" / "busy"
    assert second.returncode == 2, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"run dir {run_dir} is in use by pid {first.pid}" in errors[0]
    assert "starting" not in second.stdout  # refused before it planned a run
    assert first.returncode == 0, err[-3000:]
    assert not (run_dir / LOCK_NAME).exists()


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_a_loadable_last_ckpt_and_the_rerun_resumes(tmp_path):
    env, rng, max_steps = _env(tmp_path), random.Random(20), 400
    cmd = _train_command(f"trainer.max_steps={max_steps}", "run_id=killed")
    run_dir = tmp_path / "runs" / "ddpm_toy2d" / "killed"
    last = run_dir / "checkpoints" / "last.ckpt"
    saved_steps = []
    for attempt in range(3):
        log = (tmp_path / f"attempt{attempt}.err").open("w")
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log)
        seen = last.stat().st_mtime_ns if last.exists() else None
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and (not last.exists() or last.stat().st_mtime_ns == seen):
            time.sleep(0.02)  # until this attempt has written a checkpoint of its own
        time.sleep(rng.uniform(0.0, 1.5))
        assert proc.poll() is None, f"attempt {attempt} ended before the kill: {(tmp_path / f'attempt{attempt}.err').read_text()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):  # every checkpoint on disk loads whole
            state = torch.load(ckpt, weights_only=True, map_location="cpu")
            assert 0 < state["global_step"] <= max_steps and state["state_dict"], ckpt
        step = torch.load(last, weights_only=True)["global_step"]
        assert not saved_steps or step >= saved_steps[-1]
        saved_steps.append(step)
        if attempt:
            assert "taking over the lock" in (tmp_path / f"attempt{attempt}.err").read_text()  # the killed run's lock
    # the re-run (a few more steps than the last checkpoint's, to keep the test short) resumes from it
    end = saved_steps[-1] + 5
    again = subprocess.run(_train_command(f"trainer.max_steps={end}", "run_id=killed"), cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"(step {saved_steps[-1]})" in again.stdout and "resuming" in again.stdout, again.stdout[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == end
    assert not (run_dir / LOCK_NAME).exists()
    assert not [p.name for p in run_dir.rglob("*.tmp")]  # what the killed runs were writing is cleared away


@pytest.mark.slow
def test_an_evaluation_killed_at_random_moments_never_leaves_half_a_metrics_file(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    train(compose_train(["experiment=ddpm_toy2d", *TINY], run_dir=tmp_path / "run"))
    out, env = tmp_path / "eval", _env(tmp_path)

    def command(seed: int) -> list[str]:
        return [sys.executable, "-m", "diffzoo.evaluate", f"ckpt_path={ckpt}", "n=1000", "batch_size=250", "metrics=[swd,mmd]",
                "sampler.steps=20", f"seed={seed}", f"out={out}", "progress=false", f"paths.cache_dir={tmp_path / 'cache'}"]

    first = subprocess.run(command(0), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    complete = (out / "metrics.json").read_bytes()
    started = time.time()
    subprocess.run(command(1), cwd=tmp_path, env=env, capture_output=True, timeout=300)
    duration = time.time() - started
    rng = random.Random(7)
    for seed in (2, 3, 4):
        proc = subprocess.Popen(command(seed), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * duration)  # anywhere in the run, its end (the write) included
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        metrics = json.loads((out / "metrics.json").read_text())  # whole JSON, never half of one
        assert metrics["seed"] in (0, 1, seed) and metrics["n"] == 1000
        assert complete  # the first run's file was whole too
