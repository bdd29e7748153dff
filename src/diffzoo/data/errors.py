"""The errors the data layer raises: one clear, one-line message instead of a deep traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DiffzooError

__all__ = ["DataNotFoundError", "check_choice"]


class DataNotFoundError(DiffzooError, FileNotFoundError):
    """A data set is not on disk.

    The message names what is missing, every place that was searched, and how to get it, e.g.
    ``CIFAR-10 not found (looked in: /data/cifar-10-batches-py). To get it: set data.download=true
    (needs internet), or put the extracted 'cifar-10-batches-py' folder under /data.``

    Attributes:
        what: the missing thing, e.g. ``"CIFAR-10"``.
        looked_in: the paths that were searched, as strings.
        how_to_get: the remedy, one sentence.
    """

    def __init__(self, what: str, looked_in: Iterable[str | Path], how_to_get: str):
        self.what = what
        self.looked_in = [str(p) for p in looked_in]
        self.how_to_get = how_to_get
        super().__init__(f"{what} not found (looked in: {', '.join(self.looked_in)}). To get it: {how_to_get}")

    def __str__(self) -> str:  # FileNotFoundError would otherwise print the args tuple
        return self.args[0]

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.what, self.looked_in, self.how_to_get))


def check_choice(key: str, value, allowed: Sequence) -> None:
    """Raise ``ValueError`` naming ``key`` and listing the allowed values unless ``value`` is one."""
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not one of the allowed values: {', '.join(map(repr, allowed))}")
