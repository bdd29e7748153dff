"""Writing result files so that readers never see half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["write_json_atomic"]


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temporary file and an atomic rename (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=float))
    os.replace(tmp, path)


def save_with_card(path: Path, state_dict: dict, card: dict) -> None:
    """A trained helper network's weights and card as ``path`` (``{"state_dict", "card"}``, written to a
    temporary file first and renamed, so a reader never sees half a file) and the card alone as
    ``path.with_suffix(".json")`` for people."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": state_dict, "card": card}, tmp)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2))
