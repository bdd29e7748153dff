"""Negative log-likelihood in bits/dim from the variational bound of a discrete-time model.

For a model ``p_θ(x_{0:T})`` with Gaussian reverse steps (DDPM eq. 5; Improved DDPM eqs. 4–6),

    −log p_θ(x_0) ≤ L_T + Σ_{t=2}^{T} L_{t−1} + L_0,

with ``L_T = KL(q(x_T | x_0) ‖ N(0, I))``, ``L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))`` at
``x_t ~ q(x_t | x_0)`` and the discretised-Gaussian decoder ``L_0 = −log p_θ(x_0 | x_1)`` over 256
levels (DDPM eq. 13). Every term is evaluated at one draw of ``x_t`` per example (an unbiased
estimate of the bound, as improved-diffusion ``calc_bpd_loop``). A respaced schedule
(Improved DDPM §4) gives the bound of the respaced K-step model, which is a valid model of its
own: its forward process has the same marginals on the sub-sequence.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ..denoisers import Denoiser, EpsFnView
from ..objectives.vlb import prior_bpd, vlb_term_bpd
from ..parameterization.reverse import check_variance_kind, p_mean_variance, split_model_output
from ..schedules.discrete import DiscreteSchedule
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like

__all__ = ["VLBBitsPerDim", "vlb_bits_per_dim"]


class VLBBitsPerDim(NamedTuple):
    """``total_bpd`` ``[B]`` = ``prior_bpd`` ``[B]`` + ``terms_bpd.sum(1)``; ``terms_bpd`` ``[B, T]``
    holds ``L_0`` (decoder) in column 0 and ``L_{t−1}`` in column ``t − 1`` (schedule index order)."""

    total_bpd: torch.Tensor
    prior_bpd: torch.Tensor
    terms_bpd: torch.Tensor


@torch.no_grad()
def vlb_bits_per_dim(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: DiscreteSchedule,
    x0: torch.Tensor,
    variance: str = "fixedlarge",
    clip_x0: bool = False,
    generator: GeneratorLike = None,
    progress: bool = False,
) -> VLBBitsPerDim:
    """The full variational bound on ``−log₂ p_θ(x_0)`` per dimension, term by term.

    Args:
        eps_fn: ``eps_fn(x, t) → [B, C, …]`` (``2C`` for ``"learned_range"``); ``t`` is an int64
            ``[B]`` tensor of indices into the *original* schedule — or a module's denoiser on the
            original schedule.
        schedule: the schedule, possibly respaced (one network call per step of it).
        x0: data ``[B, C, …]`` on the 256 levels of [-1, 1] (the decoder's bins).
        variance: ``"fixedlarge"``, ``"fixedsmall"`` or ``"learned_range"`` (see
            :func:`diffzoo.parameterization.p_mean_variance`).
        clip_x0: clip x̂_0 to [-1, 1] in the reverse mean.
        generator: for the noise of each ``x_t`` (``None``, one generator, or one per example).
    Returns: :class:`VLBBitsPerDim` (float ``[B]``, ``[B]``, ``[B, T]``).
    """
    check_variance_kind(variance)
    if isinstance(eps_fn, Denoiser):
        eps_fn = EpsFnView(eps_fn)
    channels, B = x0.shape[1], x0.shape[0]
    timesteps = schedule.timesteps.to(x0.device)
    terms = torch.empty(B, schedule.T, dtype=x0.dtype, device=x0.device)
    for i in track(reversed(range(schedule.T)), total=schedule.T, description="VLB", enabled=progress):
        t = torch.full((B,), i, dtype=torch.long, device=x0.device)
        x_t = schedule.q_sample(x0, t, randn_like(x0, generator))  # DDPM eq. 4
        eps, v = split_model_output(eps_fn(x_t, timesteps[t]).to(x0.dtype), channels, variance)
        model = p_mean_variance(schedule, x_t, t, eps, variance, v=v, clip_x0=clip_x0)
        terms[:, i] = vlb_term_bpd(schedule, x0, x_t, t, model)  # L_{t−1}, or L_0 at index 0
    prior = prior_bpd(schedule, x0)  # L_T
    return VLBBitsPerDim(prior + terms.sum(dim=1), prior, terms)
