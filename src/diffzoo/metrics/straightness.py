"""Straightness of a flow's ODE paths (Liu et al. 2022, "Flow Straight and Fast": the straightness
``S(Z) = ∫₀¹ E‖(Z₁ − Z₀) − Ż_t‖² dt``; 0 exactly when every path is a straight line
travelled at constant speed, which one Euler step then solves exactly).

:func:`straightness` measures it for one batch of starting points; :func:`straightness_records`
is the ``straightness`` metric of an evaluation (``diffzoo-eval metrics=[…,straightness]``, the
evaluation callback): the mean over ``n`` paths started from the evaluation's own ``x_T`` draws
(path ``i`` from ``(seed, i)``, shared over processes like the samples), with its standard error.
Any model whose process has a continuous-time view is measured along its probability-flow ODE in
that process's own time; only rectified flow's time makes S comparable with Liu et al.'s numbers.
"""

from __future__ import annotations

import math

import torch

from ..samplers.flow import flow_euler, flow_process
from .distributed import all_reduce_max, draw_samples, gather_by_index
from .naming import MetricRecord, metric_name

__all__ = ["straightness", "straightness_per_path", "straightness_records", "STRAIGHTNESS_STEPS"]

STRAIGHTNESS_STEPS = 100  # Euler steps of the measured path (Liu et al. §5 measure along their 100-step Euler ODE)


@torch.no_grad()
def straightness_per_path(denoiser, x_T: torch.Tensor, steps: int = STRAIGHTNESS_STEPS, spacing: str = "uniform"
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``S_i = (1/L) ∫ ‖(x_T,i − x_end,i)/L − u(x_t,i, t)‖² dt`` for each path ``i`` over the solver's
    time interval of length ``L`` (rectified flow: L = 1, Liu et al.'s S(Z) in diffzoo's reversed
    time, where ``Z₁ − Z₀ = x_0 − x_1`` and ``Ż = −u``), along the Euler path of ``steps`` steps from
    ``x_T`` ``[B, …]``: the integral by the steps' left rule, the norm summed over dimensions.

    Returns: ``(S, x_end)``: float64 ``[B]`` (squared units of the data) and the path ends ``[B, …]``."""
    velocities, times = [], []

    def keep(info: dict) -> None:
        velocities.append(info["velocity"].double())
        times.append(float(info["t"]))

    x_end = flow_euler(denoiser, x_T, steps, spacing=spacing, callback=keep)
    process = flow_process(denoiser.process)  # the time the Euler steps walk
    t_hi, t_lo = float(process.t_max), float(process.sampling_eps)
    length = t_hi - t_lo
    chord = (x_T.double() - x_end.double()) / length  # the constant velocity of the straight path
    ends = times[1:] + [t_lo]  # step k runs from times[k] down to ends[k]
    per_path = torch.zeros(x_T.shape[0], dtype=torch.float64, device=x_T.device)
    for u, t, s in zip(velocities, times, ends):
        per_path += (t - s) / length * (chord - u).flatten(1).pow(2).sum(1)
    return per_path, x_end


def straightness(denoiser, x_T: torch.Tensor, steps: int = STRAIGHTNESS_STEPS, spacing: str = "uniform") -> float:
    """The batch mean of :func:`straightness_per_path` (``x_T`` ``[B, …]``) as a float."""
    return float(straightness_per_path(denoiser, x_T, steps, spacing)[0].mean())


class _PathMeter:
    """A sampler for :func:`~diffzoo.samplers.sample_indices` that walks the Euler path and keeps
    each batch's per-path straightness (``values``: float64 ``[b]`` tensors, in batch order)."""

    def __init__(self, steps: int):
        self.steps, self.values = int(steps), []

    def __call__(self, model, x_T, generator=None, callback=None, progress: bool = False) -> torch.Tensor:
        per_path, x_end = straightness_per_path(model, x_T, self.steps)
        self.values.append(per_path.cpu())
        if callback is not None:
            callback({"nfe": self.steps})
        return x_end


def straightness_records(module, n: int, seed: int = 0, batch_size: int = 256, use_ema: bool = True, step: int | None = None,
                         shard: str = "contiguous", progress: bool = False, steps: int = STRAIGHTNESS_STEPS) -> list[MetricRecord]:
    """The ``straightness`` metric of ``module`` (anything :func:`~diffzoo.metrics.distributed.draw_samples`
    takes): one :class:`MetricRecord` named e.g. ``straightness1k`` — the mean of S over ``n`` paths
    (``std``: its standard error). Every process of the default group must call it; each walks its
    share of the paths and all get the same record."""
    meter, indices = _PathMeter(steps), []
    for batch in draw_samples(module, n, seed, batch_size, use_ema, mode=shard, progress=progress, sampler_fn=meter):
        indices.append(batch.indices)
    local = torch.cat(meter.values) if meter.values else torch.empty(0, dtype=torch.float64)
    idx = torch.cat(indices) if indices else torch.empty(0, dtype=torch.long)
    values = gather_by_index(local, idx, n)
    se = float(values.std() / math.sqrt(n)) if n > 1 else None
    return [MetricRecord(name=metric_name("straightness", n, None), value=float(values.mean()), std=se, metric="straightness",
                         n=n, sampler="flow_euler", nfe=all_reduce_max(steps if indices else 0), weights=module.weights_label(use_ema),
                         seed=seed, step=step, sampler_options={"steps": steps, "spacing": "uniform"},
                         extra={"time": "the process's continuous time", "unit": "squared data units per path"})]
