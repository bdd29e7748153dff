"""Safe checkpoint loading and compatibility checks.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
so a downloaded file cannot run code when it is opened.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, ConfigError

__all__ = ["load_checkpoint", "check_state_dict_compatible", "resolve_ckpt_path", "own_checkpoint", "plan_resume",
           "ResumePlan", "RESUME_MODES"]

RESUME_MODES = ("auto", "never", "must")


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


def own_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint a run wrote into its own dir: ``checkpoints/last.ckpt`` or the
    ``hpc_ckpt_<n>.ckpt`` Lightning saves on SLURM's requeue signal; ``None`` if there is none."""
    found = [p for p in [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@dataclass(frozen=True)
class ResumePlan:
    """Where training starts: ``path`` (``None`` = from scratch); ``own`` is true when ``path`` is
    this run's own checkpoint (a resume: step, optimizer, RNG, W&B run continue) rather than a
    ``ckpt_path=<file>`` given on the command line."""

    path: Path | None
    own: bool
    message: str


def plan_resume(resume: str, ckpt_path: str | None, run_dir: Path) -> ResumePlan:
    """Decide how a run starts, from ``resume`` (``auto`` | ``never`` | ``must``), ``ckpt_path``
    and what the run dir already holds:

    * ``auto``: continue from the run dir's own checkpoint if there is one (a requeued or re-run
      job), else from ``ckpt_path`` if given, else from scratch. The own checkpoint wins over
      ``ckpt_path=<file>``: a requeued job must not restart from the file it started from.
    * ``must``: as ``auto``, but a run dir without a checkpoint (and no ``ckpt_path``) is an error.
    * ``never``: never continue this run dir's checkpoints; a run dir that already holds one is an
      error (a fresh run there would overwrite them), so is ``ckpt_path=last``.
    """
    if resume not in RESUME_MODES:
        raise ConfigError(f"resume={resume!r} is not one of {list(RESUME_MODES)}")
    own = own_checkpoint(run_dir)
    if resume == "never":
        if ckpt_path == "last":
            raise ConfigError("resume=never contradicts ckpt_path=last (which resumes the run in run_dir)")
        if own is not None:
            raise ConfigError(
                f"resume=never, but {run_dir} already holds {own.name}: a fresh run there would overwrite it. "
                "Use resume=auto to continue that run, or a new run_id=/run_dir= for a fresh one")
    elif own is not None:
        return ResumePlan(own, True, f"resuming {run_dir} from {own}")
    if ckpt_path not in (None, "", "null", "last"):
        path = resolve_ckpt_path(ckpt_path, run_dir)
        return ResumePlan(path, False, f"starting from ckpt_path={path} (weights, optimizer and step)")
    if resume == "must":
        raise ConfigError(f"resume=must, but {run_dir} holds no checkpoint (checkpoints/last.ckpt); "
                          "check run_id=/run_dir=, or use resume=auto to start fresh")
    return ResumePlan(None, False, f"starting a fresh run in {run_dir}")
