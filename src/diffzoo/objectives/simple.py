"""DDPM's simplified objective L_simple (Ho et al. 2020, eq. 14), with the target (ε, x_0 or v) and the
Min-SNR-γ weighting as options (:mod:`diffzoo.objectives.weighting`)."""

from __future__ import annotations

import torch
from torch import nn

from ..schedules.discrete import DiscreteSchedule, extract
from .base import ObjectiveOutput, uniform_timesteps
from .vlb import mean_flat
from .weighting import Target, Weighting, check_target, check_weighting, min_snr_weight, training_target

__all__ = ["SimpleLoss"]


class SimpleLoss(nn.Module):
    """``L_simple = E_{t, x_0, ε} w(t) ‖y − y_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖²`` with ``t ~ U{1, …, T}``
    and the squared error averaged over dimensions ("meanflat", DDPM code).

    With the defaults (``prediction="eps"``, ``weighting="none"``) this is DDPM eq. 14 exactly:
    ``y = ε``, ``w = 1``. Checkpoints written before these options existed load with the defaults.

    Args:
        prediction: what the network predicts and the loss regresses — ``"eps"``, ``"x0"`` or
            ``"v"`` (``v = α ε − σ x_0``, Salimans & Ho 2022, §4). The module reads the network's
            output the same way (:meth:`diffzoo.lit.DiffusionModule.denoiser`): this is the one
            place the prediction type is configured.
        weighting: ``"none"`` or ``"min_snr"`` (Hang et al. 2023; :func:`min_snr_weight`).
        snr_gamma: γ of Min-SNR-γ (the paper's default 5).

    Only the first C output channels are used, so a learned-variance network can be trained with
    it too (its variance channels then get no gradient).
    """

    def __init__(self, prediction: Target = "eps", weighting: Weighting = "none", snr_gamma: float = 5.0):
        super().__init__()
        self.prediction = check_target(prediction)
        self.weighting = check_weighting(weighting, snr_gamma)
        self.snr_gamma = float(snr_gamma)

    def extra_repr(self) -> str:
        return f"prediction={self.prediction}, weighting={self.weighting}, snr_gamma={self.snr_gamma}"

    def forward(self, net: nn.Module, schedule: DiscreteSchedule, x0: torch.Tensor, **cond) -> ObjectiveOutput:
        """Args: ``net(x_t, t, **cond)``; ``x0`` ``[B, C, …]`` in [-1, 1]; ``cond`` e.g. ``y``.
        Returns the batch-mean loss with per-sample (weighted) losses ``[B]`` and the drawn ``t`` ``[B]``."""
        t = uniform_timesteps(schedule.T, x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, noise)
        out = net(x_t, schedule.timesteps[t].to(x0.dtype), **cond)[:, : x0.shape[1]]
        if self.prediction == "eps":
            target = noise  # DDPM eq. 14 as before
        else:
            alpha = extract(schedule.sqrt_alphas_cumprod, t, x0)
            sigma = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0)
            target = training_target(self.prediction, x0, noise, alpha, sigma)
        per_sample = mean_flat((target - out.float()) ** 2)
        if self.weighting == "min_snr":
            weight = min_snr_weight(schedule.snr(t), self.prediction, self.snr_gamma)
            per_sample = per_sample * weight.to(per_sample.dtype)
        return ObjectiveOutput(per_sample.mean(), per_sample, t)
