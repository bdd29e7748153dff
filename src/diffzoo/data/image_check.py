"""Which files of an image folder decode: every file decoded once before training, the verdicts
remembered per file.

A folder is checked in full (:func:`~diffzoo.data.image_decode.decode_image` on every file, in
threads: PIL's decoders release the GIL) so that a run never meets a bad file mid-way. With a
``cache`` file the verdict of each file is kept with its size and modification time: the next run
over the same folder decodes only the files that are new or changed (an ImageNet-size folder is
decoded once, then only listed).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from ..utils.io import WriteFailedError, write_json_atomic
from .image_decode import decode_image, describe_error

__all__ = ["FolderCheck", "check_images"]

_CACHE_VERSION = 1


class FolderCheck(NamedTuple):
    """What :func:`check_images` found: ``good[i]`` for ``files[i]``; ``bad`` as ``(path, reason)``
    in file order; ``small``: how many good images have a side shorter than the resolution;
    ``decoded``: how many files were decoded now (the others' verdicts came from the cache)."""

    good: list[bool]
    bad: list[tuple[Path, str]]
    small: int
    decoded: int


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _probe(path: Path) -> list:
    """``[ok, reason, shorter side]`` of one file (the verdict does not depend on the channels kept)."""
    try:
        im = decode_image(path, 3)
    except Exception as e:  # any decoder failure makes the file bad (PIL raises many types)
        return [False, describe_error(e, path), 0]
    return [True, "", min(im.size)]


def _load_cache(cache: Path | None) -> dict:
    if cache is None or not cache.is_file():
        return {}
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):  # unreadable: check again
        return {}
    return data.get("files", {}) if data.get("version") == _CACHE_VERSION else {}


def check_images(files: list[Path], resolution: int, threads: int | None = None, cache: Path | None = None) -> FolderCheck:
    """Decode every file of ``files`` whose verdict is not in ``cache`` (same size and modification
    time) and sort them into good and bad; see :class:`FolderCheck`. The cache is rewritten
    atomically; a cache that cannot be written (read-only, full disk) only costs the next run time."""
    threads = threads or max(1, min(8, os.cpu_count() or 1))
    known = _load_cache(cache)
    stamps = [_stamp(f) for f in files]
    todo = [i for i, (f, stamp) in enumerate(zip(files, stamps)) if known.get(str(f), [None])[0] != stamp]
    with ThreadPoolExecutor(threads) as pool:
        fresh = dict(zip(todo, pool.map(lambda i: _probe(files[i]), todo)))
    verdicts = [fresh[i] if i in fresh else known[str(f)][1] for i, f in enumerate(files)]
    if cache is not None and todo:
        entries = {str(f): [stamp, v] for f, stamp, v in zip(files, stamps, verdicts)}
        try:
            write_json_atomic(cache, {"version": _CACHE_VERSION, "files": entries})
        except (WriteFailedError, OSError):
            pass
    good = [bool(v[0]) for v in verdicts]
    bad = [(f, v[1]) for f, v in zip(files, verdicts) if not v[0]]
    small = sum(1 for v in verdicts if v[0] and v[2] < resolution)
    return FolderCheck(good, bad, small, len(todo))
