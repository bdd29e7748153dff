"""Improved DDPM's objectives for a learned reverse variance (Nichol & Dhariwal 2021, §3.1–3.3).

The network outputs ``2C`` channels: ε (first C) and ``v`` (last C), with
``Σ_θ = exp(v' log β_t + (1 − v') log β̃_t)``, ``v' = (v + 1)/2`` (iDDPM eq. 15; see
:func:`diffzoo.parameterization.p_mean_variance`). With ``t`` drawn by a timestep sampler with
weights ``w_t = 1/(T p_t)``:

* :class:`VLBLoss` — ``L_vlb = L_0 + L_1 + … + L_{T−1}`` (iDDPM eqs. 4–6; the prior term ``L_T``
  has no parameters and is left out), estimated per example by ``T · w_t · L_t`` in bits/dim
  (improved-diffusion ``training_losses``, ``LossType.KL``: ``vb · num_timesteps``).
* :class:`HybridLoss` — ``L_hybrid = L_simple + λ L_vlb`` with λ = 0.001 (iDDPM eq. 16), where
  inside ``L_vlb`` the mean uses a *stopped-gradient* ε, so ``L_simple`` alone trains the mean
  and ``L_vlb`` only the variance (iDDPM §3.1). Per example this is
  ``‖ε − ε_θ‖²_meanflat + λ·T·L_t``; with λ = 0.001 the factor ``λ·T`` is improved-diffusion's
  ``vb *= num_timesteps / 1000.0`` (``LossType.RESCALED_MSE``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..parameterization.reverse import check_variance_kind, p_mean_variance, split_model_output
from ..schedules.discrete import DiscreteSchedule
from .base import ObjectiveOutput
from .resample import TimestepDraw, TimestepSampler, UniformSampler
from .vlb import mean_flat, vlb_term_bpd

__all__ = ["HybridLoss", "VLBLoss", "HybridTerms"]


class HybridTerms(NamedTuple):
    """Per-example terms ``[B]``: ``mse`` = ‖ε − ε_θ‖² averaged over dimensions; ``vb`` = ``L_t``
    in bits/dim for the drawn t (the decoder NLL ``L_0`` at index 0)."""

    mse: torch.Tensor
    vb: torch.Tensor


class _NoisedBatch(NamedTuple):
    draw: TimestepDraw
    noise: torch.Tensor
    x_t: torch.Tensor
    out: torch.Tensor


def _fp32(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision network outputs are upcast before the loss)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _noised_batch(sampler: TimestepSampler, net: nn.Module, schedule: DiscreteSchedule, x0: torch.Tensor, cond: dict) -> _NoisedBatch:
    """Draw ``t ~ p`` and ``ε ~ N(0, I)``, form ``x_t`` (DDPM eq. 4) and run the network on it."""
    draw = sampler.sample(schedule.T, x0.shape[0], x0.device)
    noise = torch.randn_like(x0)
    x_t = schedule.q_sample(x0, draw.t, noise)
    out = net(x_t, schedule.timesteps.to(x0.device)[draw.t].to(x0.dtype), **cond)
    return _NoisedBatch(draw, noise, x_t, out)


def _weighted(module: nn.Module, per_sample: torch.Tensor, draw: TimestepDraw) -> ObjectiveOutput:
    """Importance-weighted batch mean; during training the sampler sees the unweighted losses."""
    if module.training:
        module.timestep_sampler.update(draw.t, per_sample.detach())
    return ObjectiveOutput((per_sample * draw.weights.to(per_sample.dtype)).mean(), per_sample, draw.t)


def _check_sampler(timestep_sampler: TimestepSampler | None) -> TimestepSampler:
    sampler = UniformSampler() if timestep_sampler is None else timestep_sampler
    if not isinstance(sampler, TimestepSampler):
        raise TypeError(f"timestep_sampler must be a diffzoo.objectives.resample.TimestepSampler, got {type(sampler).__name__}")
    return sampler


class VLBLoss(nn.Module):
    """``L_vlb`` with importance-sampled t (Improved DDPM §3.3).

    Args:
        variance: reverse variance, one of ``"learned_range"`` (default; the network has ``2C``
            output channels), ``"fixedlarge"``, ``"fixedsmall"`` (DDPM's "L" objective, Table 2).
        timestep_sampler: distribution of t; default uniform. The paper's choice for ``L_vlb`` is
            :class:`~diffzoo.objectives.resample.LossSecondMomentSampler`.
    """

    def __init__(self, variance: str = "learned_range", timestep_sampler: TimestepSampler | None = None):
        super().__init__()
        self.variance = check_variance_kind(variance)
        self.timestep_sampler = _check_sampler(timestep_sampler)

    def extra_repr(self) -> str:
        return f"variance={self.variance!r}"

    def forward(self, net: nn.Module, schedule: DiscreteSchedule, x0: torch.Tensor, **cond) -> ObjectiveOutput:
        """``net(x_t, t, **cond)`` → ``[B, 2C, …]``; ``x0`` ``[B, C, …]`` on 256 levels in [-1, 1].
        Returns the weighted batch mean of ``T·L_t`` (bits/dim), per-example ``T·L_t`` ``[B]`` and t."""
        batch = _noised_batch(self.timestep_sampler, net, schedule, x0, cond)
        eps, v = split_model_output(_fp32(batch.out), x0.shape[1], self.variance)
        model = p_mean_variance(schedule, _fp32(batch.x_t), batch.draw.t, eps, self.variance, v=v)
        per_sample = schedule.T * vlb_term_bpd(schedule, _fp32(x0), _fp32(batch.x_t), batch.draw.t, model)
        return _weighted(self, per_sample, batch.draw)


class HybridLoss(nn.Module):
    """``L_hybrid = L_simple + λ L_vlb`` with stop-gradient on the mean in ``L_vlb`` (Improved DDPM
    eq. 16, §3.1). The network must output ``2C`` channels (ε, v).

    Args:
        lambda_vlb: λ (paper: 0.001).
        timestep_sampler: distribution of t; default uniform (the paper's choice for ``L_hybrid``).
    """

    def __init__(self, lambda_vlb: float = 0.001, timestep_sampler: TimestepSampler | None = None):
        super().__init__()
        if not lambda_vlb >= 0:
            raise ValueError(f"objective.lambda_vlb must be >= 0, got {lambda_vlb}")
        self.lambda_vlb = float(lambda_vlb)
        self.timestep_sampler = _check_sampler(timestep_sampler)

    def extra_repr(self) -> str:
        return f"lambda_vlb={self.lambda_vlb}"

    def forward(self, net: nn.Module, schedule: DiscreteSchedule, x0: torch.Tensor, **cond) -> ObjectiveOutput:
        """``net(x_t, t, **cond)`` → ``[B, 2C, …]``; ``x0`` ``[B, C, …]`` on 256 levels in [-1, 1].
        Returns the weighted batch mean of ``mse + λ·T·L_t``, the per-example values ``[B]`` and t."""
        batch = _noised_batch(self.timestep_sampler, net, schedule, x0, cond)
        terms = self.terms(schedule, x0, batch.x_t, batch.draw.t, batch.noise, batch.out)
        return _weighted(self, terms.mse + self.lambda_vlb * schedule.T * terms.vb, batch.draw)

    @staticmethod
    def terms(schedule: DiscreteSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
              noise: torch.Tensor, out: torch.Tensor) -> HybridTerms:
        """The two terms for a given network output ``out`` ``[B, 2C, …]`` at ``(x_t, t)``.

        ``mse`` depends on the ε channels only; ``vb`` on the v channels only, its mean being
        built from ``ε.detach()`` ("frozen" ε, improved-diffusion ``training_losses``).
        """
        eps, v = split_model_output(_fp32(out), x0.shape[1], "learned_range")
        mse = mean_flat((_fp32(noise) - eps) ** 2)  # DDPM eq. 14
        frozen = p_mean_variance(schedule, _fp32(x_t), t, eps.detach(), "learned_range", v=v)
        vb = vlb_term_bpd(schedule, _fp32(x0), _fp32(x_t), t, frozen)  # iDDPM eqs. 4–6
        return HybridTerms(mse, vb)
