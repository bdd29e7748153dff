"""Errors a user can act on. Entry points print their message as one line (no traceback)."""

from __future__ import annotations

__all__ = ["DiffzooError", "ConfigError", "CheckpointError", "user_facing_errors", "run_reporting_errors"]


class DiffzooError(Exception):
    """Base class: the message names the key / file and what would be valid."""


class ConfigError(DiffzooError, ValueError):
    """A config value is invalid or inconsistent with another one."""


class CheckpointError(DiffzooError, FileNotFoundError):
    """A checkpoint is missing, corrupt, unsafe, or belongs to a different network."""


def user_facing_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message alone is shown to the user by the command-line tools (every
    :class:`DiffzooError`: bad config, missing checkpoint or data set, missing weights)."""
    return (DiffzooError,)


def run_reporting_errors(fn, *args, **kwargs):
    """Call ``fn``; a user-facing error is printed as one ``error: …`` line on stderr and the
    process exits with status 2 (the command-line tools' contract: no traceback for bad input)."""
    import sys

    try:
        return fn(*args, **kwargs)
    except user_facing_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
