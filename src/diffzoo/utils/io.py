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
