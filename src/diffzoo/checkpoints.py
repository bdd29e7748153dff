"""Safe checkpoint loading and compatibility checks.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
so a downloaded file cannot run code when it is opened.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

__all__ = ["load_checkpoint", "check_state_dict_compatible", "resolve_ckpt_path"]


def load_checkpoint(path) -> dict:
    """Read a checkpoint safely (``weights_only=True``). Errors name the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (ckpt_path must name an existing .ckpt file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it contains objects other than tensors and plain containers "
            f"(possible code execution on load). Detail: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: file is corrupt or not a torch checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a diffzoo/Lightning checkpoint (no 'state_dict')")
    return ckpt


def check_state_dict_compatible(module: nn.Module, state_dict: dict, path, prefix: str = "") -> None:
    """Raise :class:`CheckpointError` naming the first missing / unexpected / mis-shaped key."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches, e.g. {prefix}{k}: checkpoint {tuple(state_dict[k].shape)} vs this net {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} weights missing, e.g. {prefix}{missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights, e.g. {prefix}{unexpected[0]}")
        raise CheckpointError(
            f"checkpoint {path} was trained with a different network than the configured one ("
            + "; ".join(parts)
            + "). Use the same net=/experiment= as the run that wrote it."
        )


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """``None`` → fresh start; ``"last"`` → ``<run_dir>/checkpoints/last.ckpt`` if present (else a
    fresh start); any other value must be an existing file."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None
    path = Path(ckpt_path).expanduser().resolve()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={ckpt_path}: no such file (give an existing .ckpt, or 'last' to resume the run in run_dir)")
    return path
