"""One process per run directory: a lock file naming its holder.

A run's first process (launch rank 0) writes ``<run_dir>/.diffzoo.lock`` — host, pid, the process's
start time, the SLURM job id, when — and removes it when the run ends, on errors too. A second
process that finds the file refuses to start with one line naming the holder, unless the lock is

* **stale**: its holder ran on this host and that pid is no longer running (or is now another
  process: its start time differs); or
* **its own job's, requeued**: the lock's SLURM job id is this process's own (SLURM keeps the id
  when it requeues a job, and a requeued job runs after the old allocation ended, often elsewhere).

Either way the lock is taken over with a one-line notice, and the temporary files the old holder was
writing when it died (:func:`~diffzoo.utils.io.remove_leftover_temporaries`) are removed. Reading, deciding and writing happen under
an ``flock`` of a guard file next to the lock, so two processes cannot both take over one stale lock;
the lock file itself is replaced atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import slurm_job_id
from ..errors import DiffzooError
from .io import remove_leftover_temporaries, write_text_atomic

__all__ = ["LOCK_NAME", "Holder", "RunDirBusyError", "RunDirLock", "is_launch_rank_zero", "takeover_reason"]

LOCK_NAME = ".diffzoo.lock"
_GUARD_NAME = ".diffzoo.lock.guard"
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK")


class RunDirBusyError(DiffzooError):
    """Another live process holds the run directory's lock."""


def is_launch_rank_zero() -> bool:
    """Whether this process is the first of its run: no launcher variable (torchrun's ``RANK``,
    Lightning's ``LOCAL_RANK`` / ``NODE_RANK`` for the ranks it starts, SLURM's ``SLURM_PROCID``)
    says otherwise."""
    for key in _RANK_VARIABLES:
        value = os.environ.get(key, "").strip()
        if value.lstrip("-").isdigit() and int(value) != 0:
            return False
    return True


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22, proc(5)),
    or ``None`` where there is no ``/proc``: tells a live holder from a new process with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: ``host``, ``pid``, its ``process_start`` (see :func:`_process_start`), the
    ``slurm_job`` id (``None`` outside SLURM), ``since`` (Unix time) and a unique ``token``."""

    host: str
    pid: int
    process_start: str | None
    slurm_job: str | None
    since: float
    token: str

    @classmethod
    def this_process(cls) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start(pid), slurm_job_id(), time.time(), uuid.uuid4().hex)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on host {self.host} (since {when}{job})"


def takeover_reason(holder: Holder, me: Holder) -> str | None:
    """Why ``me`` may take over ``holder``'s lock, or ``None`` when the holder may still be running."""
    requeued = f"; SLURM job {me.slurm_job} was requeued" if me.slurm_job and holder.slurm_job == me.slurm_job else ""
    if holder.host == me.host:
        if holder.pid == me.pid:
            return "this process held it (a previous run in this process did not release it)"
        if not _alive(holder.pid):
            return f"its holder, pid {holder.pid} on this host, is no longer running{requeued}"
        start = _process_start(holder.pid)
        if holder.process_start and start and start != holder.process_start:
            return f"its holder, pid {holder.pid} on this host, has ended (the pid now belongs to another process){requeued}"
        return None
    if requeued:
        return f"it was written by this same SLURM job ({me.slurm_job}) on host {holder.host} before a requeue"
    return None


@contextmanager
def _guarded(run_dir: Path):
    """Hold an exclusive ``flock`` of the guard file while a lock is read and written."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform: best effort
        yield
        return
    fd = os.open(run_dir / _GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock (ENOLCK on some NFS mounts): the lock file alone
            pass
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _read(path: Path) -> Holder | None:
    """The lock's holder; ``None`` when there is no lock. Raises ``ValueError`` on an unreadable one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return Holder(**json.loads(text))
    except (TypeError, ValueError) as e:
        raise ValueError(f"unreadable lock file {path}: {e}") from None


class RunDirLock:
    """The lock of one run directory, held by this process (see the module docstring).

    ``RunDirLock.acquire(run_dir)`` takes it or raises :class:`RunDirBusyError`; :meth:`release`
    removes it if it is still this process's own. Also a context manager.
    """

    def __init__(self, run_dir: Path, holder: Holder):
        self.run_dir, self.holder = Path(run_dir), holder
        self.path = self.run_dir / LOCK_NAME

    @classmethod
    def acquire(cls, run_dir: str | Path) -> RunDirLock:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        me, path = Holder.this_process(), run_dir / LOCK_NAME
        with _guarded(run_dir):
            try:
                holder = _read(path)
            except ValueError as e:
                raise RunDirBusyError(f"run dir {run_dir}: {e}; if no run uses this dir, delete {path}") from None
            if holder is not None:
                reason = takeover_reason(holder, me)
                if reason is None:
                    raise RunDirBusyError(
                        f"run dir {run_dir} is in use by {holder.describe()}; a second process would mix its "
                        f"checkpoints and logs into that run's. Wait for it to end, or start this one with another "
                        f"run_id= (or run_dir=); if that process is gone, delete {path}")
                print(f"diffzoo: taking over the lock of {run_dir} from {holder.describe()}: {reason}",
                      file=sys.stderr, flush=True)
            write_text_atomic(path, json.dumps(asdict(me), indent=1))
            if holder is not None:  # what a killed holder was writing when it died: never read, only in the way
                remove_leftover_temporaries(run_dir)
        return cls(run_dir, me)

    def release(self) -> None:
        """Remove the lock if it is still this process's own (not one taken over since)."""
        with _guarded(self.run_dir):
            try:
                holder = _read(self.path)
            except ValueError:
                return
            if holder is not None and holder.token == self.holder.token:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
