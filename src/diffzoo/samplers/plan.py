"""What a sampler will do before it runs: the time grid it walks and the network evaluations (NFE)
it spends — shared by every sampler, so that ``sampler.steps`` means one thing (the NFE budget)."""

from __future__ import annotations

from typing import Callable, NamedTuple

__all__ = ["SamplingPlan", "grid_of", "counted", "Counter"]


class SamplingPlan(NamedTuple):
    """``grid``: the increasing process times at which the model is evaluated (the last step after
    the smallest goes to clean data; empty for an adaptive solver, which picks its own); ``nfe``:
    network evaluations per sample (``None``: decided while solving)."""

    grid: list[float]
    nfe: int | None


def grid_of(process, steps: int | None, spacing: str, t_end: float | None = None) -> list[float]:
    """``steps`` times of ``process`` (``None``: its :attr:`default_steps`) spread by ``spacing``."""
    if steps is None:
        steps = process.default_steps
        if steps is None:
            raise ValueError(f"sampler.steps must be set for a {type(process).__name__} process")
    return process.time_grid(int(steps), spacing, t_end)


class Counter:
    """Counts network evaluations and forwards per-step reports to ``callback`` with ``nfe`` added."""

    def __init__(self, callback: Callable[[dict], None] | None, per_call: int = 1):
        self.callback = callback
        self.per_call = per_call
        self.nfe = 0

    def __call__(self, info: dict, evaluations: int | None = None) -> None:
        self.nfe += self.per_call if evaluations is None else evaluations
        if self.callback is not None:
            self.callback({**info, "nfe": self.nfe})


def counted(callback: Callable[[dict], None] | None) -> Counter:
    """A :class:`Counter` of one evaluation per report."""
    return Counter(callback)
