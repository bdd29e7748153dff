"""The Gaussian reverse step p_θ(x_{t−1} | x_t) = N(μ_θ(x_t, t), Σ_θ(x_t, t)) of DDPM-family models.

The network predicts ε (Ho et al. 2020, §3.2); the mean is the true posterior mean evaluated at the
x_0 implied by ε (DDPM eqs. 7 and 15, equivalent to eq. 11). The variance is one of a closed set:

* ``"fixedlarge"``: Σ = β_t (DDPM; β̃_2 at t = 1, as in the DDPM code),
* ``"fixedsmall"``: Σ = β̃_t (DDPM),
* ``"learned_range"``: log Σ = v·log β_t + (1 − v)·log β̃_t with v = (out + 1)/2 taken from the
  network's extra C output channels (Nichol & Dhariwal 2021, eq. 15).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..schedules.discrete import DiscreteSchedule, extract

__all__ = ["ReverseMoments", "VARIANCE_KINDS", "p_mean_variance", "split_model_output"]

VARIANCE_KINDS = ("fixedlarge", "fixedsmall", "learned_range")


class ReverseMoments(NamedTuple):
    """Moments of p_θ(x_{t−1} | x_t) plus the predictions they came from (all ``[B, …]``)."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor


def check_variance_kind(kind: str) -> str:
    if kind not in VARIANCE_KINDS:
        raise ValueError(f"variance must be one of {', '.join(VARIANCE_KINDS)}; got {kind!r}")
    return kind


def split_model_output(out: torch.Tensor, channels: int, variance: str):
    """Split a network output into (ε, v or None). For ``learned_range`` the output has
    ``2·channels`` channels (ε first); otherwise any extra channels are ignored."""
    check_variance_kind(variance)
    if out.shape[1] < channels * (2 if variance == "learned_range" else 1):
        raise ValueError(
            f"network output has {out.shape[1]} channels; variance={variance!r} needs "
            f"{channels * (2 if variance == 'learned_range' else 1)} (net.out_channels)"
        )
    eps = out[:, :channels]
    v = out[:, channels: 2 * channels] if variance == "learned_range" else None
    return eps, v


def p_mean_variance(
    schedule: DiscreteSchedule,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    variance: str = "fixedlarge",
    v: torch.Tensor | None = None,
    clip_x0: bool = False,
) -> ReverseMoments:
    """Moments of p_θ(x_{t−1} | x_t) for an ε-prediction.

    Args:
        schedule: the (possibly respaced) schedule; ``t`` indexes *it*, not the original one.
        x_t: ``[B, …]``; t: int64 ``[B]``; eps: ``[B, …]`` predicted noise.
        variance: one of :data:`VARIANCE_KINDS`; ``v``: ``[B, …]`` raw variance output in
            [-1, 1] for ``"learned_range"``.
        clip_x0: clip x̂_0 to [-1, 1] before forming the mean (DDPM code, for images).
    """
    check_variance_kind(variance)
    x0 = schedule.predict_x0_from_eps(x_t, t, eps)  # DDPM eq. 15
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    mean = schedule.q_posterior(x0, x_t, t).mean  # DDPM eq. 7 at x̂_0
    if variance == "learned_range":
        if v is None:
            raise ValueError("variance='learned_range' needs the network's variance output v")
        # Improved DDPM eq. 15: interpolate between log β̃_t (v = −1) and log β_t (v = +1).
        min_log = extract(schedule.posterior_log_variance_clipped, t, x_t)
        max_log = extract(torch.log(schedule.betas), t, x_t)
        frac = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
    else:
        log_var = extract(schedule.log_variance(variance), t, x_t).expand_as(x_t)
    return ReverseMoments(mean, torch.exp(log_var), log_var, x0, eps)
