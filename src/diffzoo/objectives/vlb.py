"""Terms of the DDPM variational bound (Ho et al. 2020, eq. 5), in bits per dimension.

``L = L_T + Σ_{t>1} L_{t−1} + L_0`` with ``L_T = KL(q(x_T|x_0) ‖ N(0, I))``,
``L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t))`` and the discretised-Gaussian decoder
``L_0 = −log p_θ(x_0|x_1)`` over 256 bins of [-1, 1] (DDPM eq. 13).
"""

from __future__ import annotations

import math

import torch

from ..parameterization.reverse import ReverseMoments
from ..schedules.discrete import DiscreteSchedule

__all__ = [
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "vlb_term_bpd",
    "prior_bpd",
]

LOG2 = math.log(2.0)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension: ``[B, …] → [B]``."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """``KL(N(μ1, e^{lv1}) ‖ N(μ2, e^{lv2}))`` element-wise, in nats (closed form)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """``log ∫_{δ−(x)}^{δ+(x)} N(u; μ, e^{2·log_scale}) du`` for data on 256 levels in [-1, 1]
    (DDPM eq. 13): bins of width 2/255, the outermost extended to ±∞. Element-wise, nats.

    The CDF is computed exactly with ``log_ndtr`` (the DDPM code uses a tanh approximation).
    """
    half_bin = 1.0 / 255.0
    inv_std = torch.exp(-log_scale)
    upper = (x - mean + half_bin) * inv_std
    lower = (x - mean - half_bin) * inv_std
    # log(Φ(u) − Φ(l)), computed in the tail where it does not cancel: Φ(u) − Φ(l) = Φ(−l) − Φ(−u).
    left = _log_sub_exp(torch.special.log_ndtr(upper), torch.special.log_ndtr(lower))
    right = _log_sub_exp(torch.special.log_ndtr(-lower), torch.special.log_ndtr(-upper))
    mid = torch.where(x - mean > 0, right, left)
    # Outermost bins extend to ±∞: log Φ(u) at x = −1 and log(1 − Φ(l)) at x = +1.
    return torch.where(
        x < -0.999,
        torch.special.log_ndtr(upper),
        torch.where(x > 0.999, torch.special.log_ndtr(-lower), mid),
    )


def _log_sub_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(e^a − e^b)`` for ``a ≥ b``, finite even when the two are equal in floating point."""
    return a + torch.log(-torch.expm1((b - a).clamp(max=-1e-12)))

def vlb_term_bpd(
    schedule: DiscreteSchedule,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    model: ReverseMoments,
) -> torch.Tensor:
    """``L_{t−1}`` for t > 1 (index > 0) and the decoder ``L_0`` at index 0, per sample, in
    bits/dim. Shapes: ``x0``, ``x_t`` ``[B, …]``, ``t`` int64 ``[B]`` → ``[B]``."""
    true = schedule.q_posterior(x0, x_t, t)
    kl = mean_flat(normal_kl(true.mean, true.log_variance, model.mean, model.log_variance)) / LOG2
    decoder_nll = -mean_flat(discretized_gaussian_log_likelihood(x0, model.mean, 0.5 * model.log_variance)) / LOG2
    return torch.where(t == 0, decoder_nll, kl)


def prior_bpd(schedule: DiscreteSchedule, x0: torch.Tensor) -> torch.Tensor:
    """``L_T = KL(q(x_T | x_0) ‖ N(0, I))`` per sample in bits/dim → ``[B]``."""
    t = torch.full((x0.shape[0],), schedule.T - 1, dtype=torch.long, device=x0.device)
    q = schedule.q_mean_variance(x0, t)
    kl = normal_kl(q.mean, q.log_variance.expand_as(x0), torch.zeros_like(x0), torch.zeros_like(x0))
    return mean_flat(kl) / LOG2
