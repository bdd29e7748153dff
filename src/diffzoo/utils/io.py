"""Writing result files so that readers never see half of one, and a failed write loses nothing.

Every write goes to a temporary file in the target's own directory (so the final rename never
crosses file systems), is flushed and ``fsync``-ed, then ``os.replace``-d over the target (atomic on
POSIX), and the directory entry is ``fsync``-ed. A process killed at any moment leaves either the old
file or the new one; a write that fails (disk full, quota, I/O error) removes its temporary file,
leaves the previous file as it was and raises :class:`WriteFailedError` with a one-line message.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Iterator

from ..errors import DiffzooError

__all__ = ["WriteFailedError", "atomic_file", "remove_leftover_temporaries", "save_with_card", "torch_save_atomic",
           "write_json_atomic", "write_text_atomic"]


class WriteFailedError(DiffzooError, OSError):
    """A result file could not be written (disk full, …); the previous file, if any, is unchanged."""


_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # .<name>.<mkstemp's 8 random characters>.tmp
_open_fd = os.fdopen  # how the temporary file's descriptor is opened (a test simulates a full disk here)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX: the directory entry is data of the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a platform without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_file(path) as f: f.write(...)``: ``path`` changes only if the block completes.

    The temporary file is ``.<name>.<random>.tmp`` next to ``path`` (hidden, and never matching
    ``*.ckpt`` or ``*.json``). An ``OSError`` on the way (``ENOSPC``, ``EDQUOT``, ``EIO``) becomes
    :class:`WriteFailedError`; any other exception is re-raised as it is, the temporary file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with _open_fd(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if isinstance(e, DiffzooError):
            raise
        reason = e.strerror or str(e) or type(e).__name__
        raise WriteFailedError(f"could not write {path}: {reason}; the previous {path.name}, if any, is unchanged") from e
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(path.parent)


def remove_leftover_temporaries(directory: str | Path) -> int:
    """Delete the temporary files :func:`atomic_file` leaves when its process is killed mid-write
    (``kill -9``), anywhere under ``directory``; return how many. Call it only while no process
    writes there (e.g. holding the run dir's lock)."""
    removed = 0
    for path in Path(directory).rglob(".*.tmp"):
        if path.is_file() and _TEMPORARY.match(path.name):
            with suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, "wb") as f:
        f.write(text.encode("utf-8"))


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON atomically (see :func:`atomic_file`): readers never see half a file, and a failed
    write leaves the previous file intact."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=float))


def torch_save_atomic(obj, path: str | Path) -> None:
    """``torch.save(obj, path)`` atomically (see :func:`atomic_file`). The object is serialised in
    memory first: ``torch.save`` into a file turns the file's ``OSError`` (``ENOSPC``) into an
    unspecific ``RuntimeError``; written from Python, a full disk is named as such."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path, "wb") as f:
        f.write(buffer.getbuffer())


def save_with_card(path: Path, state_dict: dict, card: dict) -> None:
    """A trained helper network's weights and card as ``path`` (``{"state_dict", "card"}``, written
    atomically) and the card alone as ``path.with_suffix(".json")`` for people."""
    path = Path(path)
    torch_save_atomic({"state_dict": state_dict, "card": card}, path)
    write_text_atomic(path.with_suffix(".json"), json.dumps(card, indent=2))
