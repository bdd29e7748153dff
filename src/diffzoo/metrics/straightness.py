"""Straightness of a flow's ODE paths (Liu et al. 2022, "Flow Straight and Fast": the straightness
``S(Z) = ∫₀¹ E‖(Z₁ − Z₀) − Ż_t‖² dt``; 0 exactly when every path is a straight line
travelled at constant speed, which one Euler step then solves exactly)."""

from __future__ import annotations

import torch

from ..samplers.flow import flow_euler

__all__ = ["straightness"]


@torch.no_grad()
def straightness(denoiser, x_T: torch.Tensor, steps: int = 100, spacing: str = "uniform") -> float:
    """``S = (1/L) ∫ E‖(x_T − x_end)/L − u(x_t, t)‖² dt`` over the solver's time interval of length ``L``
    (for rectified flow L = 1 and this is Liu et al.'s S(Z) in diffzoo's reversed time, where
    ``Z₁ − Z₀ = x_0 − x_1`` and ``Ż = −u``), estimated along the Euler path of ``steps`` steps
    from ``x_T`` ``[B, …]``: the integral by the steps' left rule, ``E`` by the batch mean, the
    norm summed over dimensions.

    Returns: S as a float (per sample, squared units of the data)."""
    velocities, times = [], []

    def keep(info: dict) -> None:
        velocities.append(info["velocity"].double())
        times.append(float(info["t"]))

    x_end = flow_euler(denoiser, x_T, steps, spacing=spacing, callback=keep).double()
    process = denoiser.process
    t_hi, t_lo = float(process.t_max), float(process.sampling_eps)
    length = t_hi - t_lo
    chord = (x_T.double() - x_end) / length  # the constant velocity of the straight path
    ends = times[1:] + [t_lo]  # step k runs from times[k] down to ends[k]
    total = torch.zeros((), dtype=torch.float64)
    for u, t, s in zip(velocities, times, ends):
        total = total + (t - s) / length * (chord - u).flatten(1).pow(2).sum(1).mean()
    return float(total)
