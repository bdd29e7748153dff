"""DDIM encoding, decoding and latent interpolation (Song et al. 2020, §5.3–5.4).

With η = 0 the DDIM update is a discretisation of the ODE (DDIM eq. 14)

    d x̄(t) = ε_θ(x̄(t)/√(σ̄² + 1), t) dσ̄(t),   x̄ = x/√ᾱ,  σ̄ = √((1 − ᾱ)/ᾱ),

so it can be run with t *increasing* to map an image x_0 to a latent x_T ("encode", §5.4) and
back ("decode" = η = 0 sampling). Each step is DDIM eq. 12 with σ = 0 between two ᾱ values,
and the reconstruction error vanishes as the number of steps grows (DDIM Table 2).

Interpolating two latents spherically (DDIM §5.3 / App. D.5, after White 2016) and decoding
gives smooth transitions between the corresponding images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import torch

from ..schedules.discrete import DiscreteSchedule, extract
from ..utils.progress import track
from .ddim import ddim, ddim_subsequence

__all__ = ["ddim_encode", "ddim_decode", "slerp", "interpolation_grid", "InterpolationGrid"]

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def ddim_encode(
    eps_fn: EpsFn,
    schedule: DiscreteSchedule,
    x0: torch.Tensor,
    steps: int,
    skip: str = "uniform",
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Map data to DDIM latents: the η = 0 update run from ᾱ = 1 up through τ_0 < … < τ_{S−1}.

    Step into ``τ_i`` from the previous level ``s`` (ᾱ_s = 1 and x_s = x_0 for i = 0), with ε
    evaluated at the point already reached (DDIM §5.4, "reverse of eq. 14"):

        x_{τ_i} = √ᾱ_{τ_i} · x̂_0 + √(1 − ᾱ_{τ_i}) · ε_θ(x_s, s),   x̂_0 = (x_s − √(1 − ᾱ_s) ε_θ) / √ᾱ_s,

    where the first step, which has no noise level below τ_0, uses ε_θ(x_0, τ_0).

    Args:
        eps_fn: ``eps_fn(x, t)`` as for :func:`diffzoo.samplers.ddim` (int64 original indices;
            extra variance channels ignored).
        schedule: the schedule; x0: data ``[B, C, …]``; steps, skip: as for ``ddim``.
        callback: called after every step with ``{"i", "t", "x", "x0", "nfe"}``.
    Returns: the latent ``x_T`` ``[B, C, …]`` at index τ_{S−1}.
    """
    sub = ddim_subsequence(schedule, steps, skip)
    x = x0
    channels, B = x.shape[1], x.shape[0]
    timesteps = sub.timesteps.to(x.device)
    for i in track(range(sub.T), total=sub.T, description="DDIM encode", enabled=progress):
        eval_index = max(i - 1, 0)  # ε at the level reached; τ_0 for the first step
        t_eval = torch.full((B,), eval_index, dtype=torch.long, device=x.device)
        t_next = torch.full((B,), i, dtype=torch.long, device=x.device)
        out = eps_fn(x, timesteps[t_eval])
        if out.shape[1] < channels:
            raise ValueError(f"network output has {out.shape[1]} channels; the data have {channels} (net.out_channels)")
        eps = out[:, :channels].to(x.dtype)
        a_s = extract(sub.alphas_cumprod_prev, t_next, x)  # ᾱ of the level reached (1 at i = 0)
        a_t = extract(sub.alphas_cumprod, t_next, x)
        pred_x0 = (x - (1 - a_s).sqrt() * eps) / a_s.sqrt()
        x = a_t.sqrt() * pred_x0 + (1 - a_t).sqrt() * eps  # DDIM eq. 12 with σ = 0, t increasing
        if callback is not None:
            callback({"i": i, "t": int(sub.timesteps[i]), "x": x, "x0": pred_x0, "nfe": i + 1})
    return x


def ddim_decode(
    eps_fn: EpsFn,
    schedule: DiscreteSchedule,
    x_T: torch.Tensor,
    steps: int,
    skip: str = "uniform",
    clip_x0: bool = False,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Map latents back to data: deterministic DDIM (η = 0) over the same sub-sequence as
    :func:`ddim_encode`. Shapes: ``x_T`` ``[B, C, …]`` → ``[B, C, …]``."""
    return ddim(eps_fn, schedule, x_T, steps, eta=0.0, skip=skip, clip_x0=clip_x0,
                callback=callback, progress=progress)


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha) -> torch.Tensor:
    """Spherical interpolation of latents (DDIM §5.3, App. D.5):

        z(α) = sin((1 − α)θ)/sin θ · z0 + sin(αθ)/sin θ · z1,   θ = arccos(⟨z0, z1⟩ / (‖z0‖‖z1‖)),

    per row. Shapes: ``z0``, ``z1`` ``[B, …]``; ``alpha`` a float or ``[B]`` → ``[B, …]``.
    Parallel rows (sin θ ≈ 0) are interpolated linearly, the limit of the formula.
    """
    if z0.shape != z1.shape:
        raise ValueError(f"slerp: z0 {tuple(z0.shape)} and z1 {tuple(z1.shape)} differ in shape")
    B = z0.shape[0]
    a = torch.as_tensor(alpha, dtype=torch.float64, device=z0.device).expand(B)
    f0, f1 = z0.reshape(B, -1).double(), z1.reshape(B, -1).double()
    cos = (f0 * f1).sum(1) / (f0.norm(dim=1) * f1.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1, 1))
    sin = torch.sin(theta)
    parallel = sin.abs() < 1e-8
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    c0 = torch.where(parallel, 1 - a, torch.sin((1 - a) * theta) / safe)
    c1 = torch.where(parallel, a, torch.sin(a * theta) / safe)
    out = c0[:, None] * f0 + c1[:, None] * f1
    return out.reshape(z0.shape).to(z0.dtype)


class InterpolationGrid(NamedTuple):
    """``images``: ``[rows · num, C, H, W]`` decoded interpolations, row-major; ``path``: the PNG."""

    images: torch.Tensor
    path: Path


def interpolation_grid(
    eps_fn: EpsFn,
    schedule: DiscreteSchedule,
    z0: torch.Tensor,
    z1: torch.Tensor,
    path,
    num: int = 8,
    steps: int = 50,
    skip: str = "uniform",
    clip_x0: bool = True,
) -> InterpolationGrid:
    """Decode ``num`` slerp points between each pair of latents and write them as a PNG grid,
    one row per pair, α = 0 … 1 left to right (DDIM Fig. 6).

    Args:
        z0, z1: latents ``[rows, C, H, W]`` (e.g. N(0, I) noise, or :func:`ddim_encode` of images).
        path: output PNG; num: interpolation points per row (≥ 2); steps, skip, clip_x0: of the decoder.
    """
    from ..utils.images import save_image_grid

    if z0.ndim != 4:
        raise ValueError(f"interpolation_grid draws images: latents must be [rows, C, H, W], got {tuple(z0.shape)}")
    if num < 2:
        raise ValueError(f"interpolation_grid: num must be >= 2, got {num}")
    rows = z0.shape[0]
    alphas = torch.linspace(0, 1, num, dtype=torch.float64)
    # row r, column k ↦ slerp(z0[r], z1[r], α_k), laid out row-major
    latents = slerp(z0.repeat_interleave(num, 0), z1.repeat_interleave(num, 0), alphas.repeat(rows))
    images = ddim_decode(eps_fn, schedule, latents, steps, skip=skip, clip_x0=clip_x0)
    return InterpolationGrid(images, save_image_grid(images, path, nrow=num))
