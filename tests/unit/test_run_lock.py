"""One process per run dir (issue 20): the lock names its holder; a live holder refuses a second
process in one line; a dead holder on this host, a recycled pid and the same SLURM job after a
requeue are taken over with a notice; only the holder's own lock is released; launch ranks > 0
never lock. (Two real ``diffzoo-train`` processes: tests/integration/test_faults.py.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest

from diffzoo.utils.run_lock import LOCK_NAME, Holder, RunDirBusyError, RunDirLock, is_launch_rank_zero


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def sleeper():
    """A live process of this host that is not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(run_dir, **fields) -> Holder:
    holder = replace(Holder.this_process(), **fields)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps(asdict(holder)))
    return holder


def _lock_of(run_dir) -> dict:
    return json.loads((run_dir / LOCK_NAME).read_text())


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    with RunDirLock.acquire(tmp_path / "run") as lock:
        held = _lock_of(tmp_path / "run")
        assert held["host"] == socket.gethostname() and held["pid"] == os.getpid()
        assert held["token"] == lock.holder.token and abs(held["since"] - time.time()) < 60
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    RunDirLock.acquire(tmp_path / "run").release()  # free again


def test_a_live_holder_refuses_a_second_process_in_one_line(tmp_path, sleeper):
    _write_lock(tmp_path, pid=sleeper.pid, process_start=None)
    with pytest.raises(RunDirBusyError) as e:
        RunDirLock.acquire(tmp_path)
    message = str(e.value)
    assert "\n" not in message
    assert f"in use by pid {sleeper.pid} on host {socket.gethostname()}" in message
    assert "run_id=" in message and str(tmp_path / LOCK_NAME) in message
    assert _lock_of(tmp_path)["pid"] == sleeper.pid  # untouched


def test_a_holder_on_another_host_is_never_guessed_dead(tmp_path):
    _write_lock(tmp_path, host="node-elsewhere", pid=_dead_pid())
    with pytest.raises(RunDirBusyError, match="on host node-elsewhere"):
        RunDirLock.acquire(tmp_path)


def test_a_stale_lock_is_taken_over_with_a_notice(tmp_path, capsys):
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead)
    lock = RunDirLock.acquire(tmp_path)
    err = capsys.readouterr().err
    assert f"taking over the lock of {tmp_path} from pid {dead}" in err and "no longer running" in err
    assert len(err.strip().splitlines()) == 1
    assert _lock_of(tmp_path)["pid"] == os.getpid()
    lock.release()


def test_taking_over_a_stale_lock_removes_what_the_dead_holder_was_writing(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    left = [tmp_path / "checkpoints" / ".last.ckpt.a1b2c3d4.tmp", tmp_path / ".metrics.json.zz_9yx8w.tmp"]
    kept = [tmp_path / "checkpoints" / "last.ckpt", tmp_path / "notes.tmp", tmp_path / ".hidden.tmp"]
    for p in left + kept:
        p.write_bytes(b"x")
    RunDirLock.acquire(tmp_path).release()  # no holder to take over from: nothing removed
    assert all(p.exists() for p in left + kept)
    _write_lock(tmp_path, pid=_dead_pid())
    RunDirLock.acquire(tmp_path).release()
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)


def test_a_recycled_pid_is_not_the_holder(tmp_path, sleeper, capsys):
    from diffzoo.utils.run_lock import _process_start

    if _process_start(sleeper.pid) is None:
        pytest.skip("no /proc: process start times are unknown here")
    _write_lock(tmp_path, pid=sleeper.pid, process_start="1")  # the pid's process started at another time
    RunDirLock.acquire(tmp_path).release()
    assert "the pid now belongs to another process" in capsys.readouterr().err


def test_the_same_slurm_job_after_a_requeue_takes_over(tmp_path, monkeypatch, capsys, sleeper):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    _write_lock(tmp_path, host="node-17", pid=12345, slurm_job="4242")
    lock = RunDirLock.acquire(tmp_path)
    assert "same SLURM job (4242) on host node-17 before a requeue" in capsys.readouterr().err
    lock.release()
    # another job's lock on another host is held
    _write_lock(tmp_path, host="node-17", pid=12345, slurm_job="4141")
    with pytest.raises(RunDirBusyError, match="SLURM job 4141"):
        RunDirLock.acquire(tmp_path)
    # the same job id on this host with its process alive: a concurrent process, not a requeue
    _write_lock(tmp_path, pid=sleeper.pid, process_start=None, slurm_job="4242")
    with pytest.raises(RunDirBusyError):
        RunDirLock.acquire(tmp_path)


def test_release_leaves_a_lock_that_was_taken_over(tmp_path):
    first = RunDirLock.acquire(tmp_path)
    other = _write_lock(tmp_path, pid=_dead_pid(), token="someone-else")
    first.release()
    assert _lock_of(tmp_path)["token"] == other.token


def test_a_file_system_without_flock_still_gets_the_lock_file(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with RunDirLock.acquire(tmp_path):
        with pytest.raises(RunDirBusyError):
            _write_lock(tmp_path, pid=os.getppid(), process_start=None, token="other")
            RunDirLock.acquire(tmp_path)


def test_an_unreadable_lock_is_refused_with_the_way_out(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{half a lock")
    with pytest.raises(RunDirBusyError, match=f"unreadable lock file .*delete {tmp_path / LOCK_NAME}"):
        RunDirLock.acquire(tmp_path)


@pytest.mark.parametrize("env, zero", [
    ({}, True), ({"RANK": "0"}, True), ({"RANK": "3"}, False), ({"LOCAL_RANK": "1"}, False),
    ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, False),  # a rank Lightning started inside a SLURM task
    ({"SLURM_PROCID": "2"}, False), ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False), ({"SLURM_PROCID": "0"}, True),
])
def test_only_the_first_process_of_a_launch_locks(monkeypatch, env, zero):
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_launch_rank_zero() is zero


def test_train_refuses_a_busy_run_dir_and_releases_its_own_lock(tmp_path, sleeper, capsys, monkeypatch):
    """In-process: a held run dir is refused before anything is written (one line, exit 2); a run
    that fails after taking the lock releases it."""
    from diffzoo.errors import run_reporting_errors
    from diffzoo.train import train
    from tests.helpers import TINY, compose_train

    run_dir = tmp_path / "run"
    _write_lock(run_dir, pid=sleeper.pid, process_start=None)
    with pytest.raises(SystemExit) as e:
        run_reporting_errors(train, compose_train(["experiment=ddpm_toy2d", *TINY], run_dir=run_dir))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: run dir {run_dir} is in use by pid {sleeper.pid}")
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints").exists()

    (run_dir / LOCK_NAME).unlink()
    taken = []
    acquire = RunDirLock.acquire.__func__

    def spy(cls, path):
        taken.append(acquire(cls, path))
        return taken[-1]

    def boom(*args, **kwargs):
        assert (run_dir / LOCK_NAME).exists()
        raise RuntimeError("boom")

    monkeypatch.setattr(RunDirLock, "acquire", classmethod(spy))
    monkeypatch.setattr("lightning.seed_everything", boom)
    with pytest.raises(RuntimeError, match="boom"):
        train(compose_train(["experiment=ddpm_toy2d", *TINY], run_dir=run_dir))
    assert len(taken) == 1 and not (run_dir / LOCK_NAME).exists()
