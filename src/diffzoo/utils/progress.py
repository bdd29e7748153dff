"""Progress bars for long loops (Rich), silent unless asked for."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def track(iterable: Iterable[T], total: int | None = None, description: str = "", enabled: bool = False) -> Iterator[T]:
    """Yield from ``iterable``, drawing a Rich progress bar when ``enabled``."""
    if not enabled:
        yield from iterable
        return
    from rich.progress import track as rich_track

    yield from rich_track(iterable, total=total, description=description, transient=True)
