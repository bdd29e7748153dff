"""Checkpoints written so that a kill or a full disk never costs the last good one.

Lightning's own writer serialises to memory, then writes through a temporary file in the system's
temp directory and moves it over the target: when that directory is on another file system (a node's
``/tmp`` against a shared run dir) the move is a copy, and a process killed during it leaves a
truncated ``last.ckpt``; nothing is ``fsync``-ed either. :class:`AtomicCheckpointIO` writes next to
the target instead (:func:`diffzoo.utils.io.torch_save_atomic`: same directory, ``fsync``, ``os.replace``),
and a failed write (``ENOSPC``) raises :class:`~diffzoo.utils.io.WriteFailedError` in one line with
the previous checkpoint left as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..utils.io import torch_save_atomic

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``Trainer(plugins=[AtomicCheckpointIO()])``: every checkpoint (periodic, ``last.ckpt``, the
    preemption save) is replaced atomically; loading and removal are Lightning's own."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        torch_save_atomic(checkpoint, Path(path))
