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

__all__ = ["load_checkpoint", "check_model_kind", "check_state_dict_compatible", "resolve_ckpt_path", "own_checkpoint", "plan_resume",
           "ResumePlan", "RESUME_MODES"]

RESUME_MODES = ("auto", "never", "must")


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since 1.6: a zip archive
_PICKLE_PROTO = b"\x80"  # a pickle of protocol >= 2: torch's legacy format (and plain pickles)


def _check_torch_file(path: Path) -> None:
    """Refuse a file that is not a torch save at all, or whose zip archive is cut short, from its
    bytes alone (before unpickling: a text file must not read as "unsafe")."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (truncated: an interrupted write or copy?)")
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path):
                return
        except (zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt ({e}); "
                                  "an interrupted write or copy? Use another checkpoint (e.g. step*.ckpt)") from None
    if not head.startswith(_PICKLE_PROTO):
        shown = head[:16].decode("ascii", errors="replace").encode("unicode_escape").decode()
        raise CheckpointError(f"{path} is not a torch checkpoint (it starts with '{shown}'; a .ckpt written by "
                              "diffzoo-train is a torch zip archive): ckpt_path must name a checkpoint file")


def _first_line(error: BaseException) -> str:
    return next(iter(str(error).splitlines()), "") or type(error).__name__


def load_checkpoint(path) -> dict:
    """Read a checkpoint safely (``weights_only=True``). Errors name the file and the reason, one of:
    missing, not a torch file, truncated / corrupt, holding objects other than tensors (code)."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise CheckpointError(f"checkpoint {what}: {path} (ckpt_path must name an existing .ckpt file)")
    _check_torch_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _first_line(e)
        if "truncated" in str(e).lower():
            raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt ({detail})") from None
        raise CheckpointError(
            f"refusing to load {path}: it contains objects other than tensors and plain containers "
            f"(possible code execution on load). Detail: {detail}"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt ({_first_line(e)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a diffzoo/Lightning checkpoint (no 'state_dict')")
    return ckpt


def check_model_kind(ckpt: dict, model_target: str | None, path) -> None:
    """Raise :class:`CheckpointError` when ``ckpt`` was written by another kind of model than
    ``model_target`` (the configured ``model._target_``): e.g. a classifier's checkpoint given to a
    diffusion run. A checkpoint without a stored config is left to the weight check."""
    stored = ((ckpt.get("diffzoo") or {}).get("config") or {}).get("model") or {}
    kind = stored.get("_target_") if isinstance(stored, dict) else None
    if kind and model_target and kind.rsplit(".", 1)[-1] != str(model_target).rsplit(".", 1)[-1]:  # re-exports differ in path
        name = ((ckpt.get("diffzoo") or {}).get("config") or {}).get("name")
        raise CheckpointError(f"checkpoint {path} is of another model kind: it holds a {kind.rsplit('.', 1)[-1]}"
                              f"{f' (run {name})' if name else ''}, but this config builds a {model_target.rsplit('.', 1)[-1]}. "
                              "Use the experiment= of the run that wrote it")


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
