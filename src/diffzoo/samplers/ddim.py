"""DDIM sampling (Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models").

One generalised step from ``t = τ_i`` to ``s = τ_{i−1}`` (DDIM eq. 12):

    x_s = √ᾱ_s · x̂_0 + √(1 − ᾱ_s − σ_t²) · ε_θ(x_t, t) + σ_t z,
    x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t,

with ``σ_t(η) = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)`` (DDIM eq. 16): η = 0 is the
deterministic DDIM, η = 1 over every step is DDPM with σ_t² = β̃_t. The last step goes to
ᾱ = 1 (the DDIM code pads ᾱ with 1 before index 0), so it returns x̂_0.

The ``σ̂`` row of DDIM Table 1 is DDPM's larger variance on the sub-sequence,
``σ̂ = √(1 − ᾱ_t/ᾱ_s)``; as in the DDIM code (``functions/denoising.py::ddpm_steps``) it is an
ancestral step with the posterior mean μ̃(x̂_0, x_t) rather than eq. 12 (whose square root
``√(1 − ᾱ_s − σ̂²)`` can be imaginary).

The sub-sequence τ is built by :func:`diffzoo.schedules.spaced_timesteps` and the ᾱ values on
it by :meth:`DiscreteSchedule.respace`, which keeps the original indices the network was
trained on (``eps_fn`` always receives those).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..schedules.discrete import DiscreteSchedule, spaced_timesteps
from ..utils.progress import track
from ..utils.random import GeneratorLike, randn_like

__all__ = ["ddim", "ddim_sigma", "ddim_subsequence", "DDIM_SKIPS"]

DDIM_SKIPS = ("uniform", "quad")

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddim_sigma(alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """``σ_t(η) = η √((1 − ᾱ_s)/(1 − ᾱ_t)) · √(1 − ᾱ_t/ᾱ_s)`` (DDIM eq. 16), element-wise.

    ``alpha_bar`` = ᾱ_t and ``alpha_bar_prev`` = ᾱ_s for the step t → s (any equal shapes).
    """
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()


def ddim_subsequence(schedule: DiscreteSchedule, steps: int, skip: str = "uniform") -> DiscreteSchedule:
    """The schedule restricted to DDIM's sub-sequence τ of ``steps`` indices (§4.2; the DDIM code's ``skip_type``).

    ``"uniform"``: ``τ = range(0, T, T // steps)``, cut to ``steps`` elements when ``steps`` does not
    divide T (the DDIM code keeps the extra ones); ``"quad"``: ``τ = int(linspace(0, √(0.8 T), steps)²)``
    with repeated indices dropped (each would be an identity step). The result has ``ᾱ`` of
    ``schedule`` at τ and ``.timesteps`` = original indices.
    """
    if skip not in DDIM_SKIPS:
        raise ValueError(f"skip must be one of {', '.join(DDIM_SKIPS)}; got {skip!r}")
    if not isinstance(steps, int) or not 1 <= steps <= schedule.T:
        raise ValueError(
            f"sampler.steps={steps!r} must be an integer in [1, {schedule.T}] (the steps of the schedule it is given)"
        )
    return schedule.respace(spaced_timesteps(schedule.T, steps, skip))


@torch.no_grad()
def ddim(
    eps_fn: EpsFn,
    schedule: DiscreteSchedule,
    x_T: torch.Tensor,
    steps: int,
    eta: float = 0.0,
    skip: str = "uniform",
    clip_x0: bool = False,
    sigma_hat: bool = False,
    generator: GeneratorLike = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw ``x_0`` with the generalised DDIM update over ``steps`` steps of ``schedule``.

    Args:
        eps_fn: ``eps_fn(x, t) → [B, C, …]``; ``t`` is an int64 ``[B]`` tensor of indices into
            the *original* schedule. A learned-variance network's extra channels (``2C`` in all)
            are ignored: DDIM uses only ε.
        schedule: a :class:`DiscreteSchedule` (possibly already respaced); ``steps`` counts its steps.
        x_T: ``[B, C, …]`` starting noise.
        steps: number of steps S (= network evaluations).
        eta: η ∈ [0, 1] of eq. 16 (0 = deterministic DDIM, 1 = DDPM-like).
        skip: ``"uniform"`` or ``"quad"`` sub-sequence (DDIM §4.2, code ``skip_type``).
        clip_x0: clip x̂_0 to [-1, 1] and use the ε consistent with it (improved-diffusion
            ``ddim_sample``); the DDIM code does not clip.
        sigma_hat: use σ̂ = √(1 − ᾱ_t/ᾱ_s) with DDPM's ancestral step (DDIM Table 1, row σ̂);
            requires ``eta = 0``.
        generator: ``None``, a generator, or one per sample (see ``utils.random``).
        callback: called after every step with ``{"i", "t", "x", "x0", "nfe"}``.
    Returns: ``x_0`` ``[B, C, …]``.
    """
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"sampler.eta must be in [0, 1] (DDIM eq. 16), got {eta!r}")
    if sigma_hat and eta != 0:
        raise ValueError("sampler.sigma_hat=true replaces sigma_t(eta) by sigma-hat (DDIM Table 1); set sampler.eta=0")
    sub = ddim_subsequence(schedule, steps, skip)
    x = x_T
    channels, B = x.shape[1], x.shape[0]
    # Every row shares the step: its coefficients are scalars, read once from the float64 tables.
    a_t_all, a_s_all = sub.alphas_cumprod.tolist(), sub.alphas_cumprod_prev.tolist()
    sigmas = ddim_sigma(sub.alphas_cumprod, sub.alphas_cumprod_prev, eta).tolist()  # DDIM eq. 16
    model_t = sub.timesteps.tolist()
    for nfe, i in enumerate(track(reversed(range(sub.T)), total=sub.T, description="DDIM", enabled=progress), 1):
        a_t, a_s = a_t_all[i], a_s_all[i]
        out = eps_fn(x, torch.full((B,), model_t[i], dtype=torch.long, device=x.device))
        if out.shape[1] < channels:
            raise ValueError(f"network output has {out.shape[1]} channels; the data have {channels} (net.out_channels)")
        eps = out[:, :channels].to(x.dtype)
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)  # DDIM eq. 12, "predicted x_0"
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)  # the ε consistent with the clipped x̂_0
        if sigma_hat:
            # DDIM Table 1, σ̂: x_s = μ̃(x̂_0, x_t) + σ̂ z with σ̂² = 1 − ᾱ_t/ᾱ_s (= β of the respaced step).
            t = torch.full((B,), i, dtype=torch.long, device=x.device)
            x = sub.q_posterior(x0, x, t).mean
            if i > 0:
                x = x + math.sqrt(1 - a_t / a_s) * randn_like(x, generator)
        else:
            sigma = sigmas[i]
            x = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps  # DDIM eq. 12
            if eta > 0 and i > 0:  # σ = 0 on the last step (ᾱ_s = 1)
                x = x + sigma * randn_like(x, generator)
        if callback is not None:
            callback({"i": i, "t": model_t[i], "x": x, "x0": x0, "nfe": nfe})
    return x
