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

from ..denoisers import Denoiser, eps_denoiser
from ..utils.progress import track
from .ddim import ddim
from .plan import counted, grid_of

__all__ = ["ddim_encode", "ddim_decode", "slerp", "interpolation_grid", "InterpolationGrid"]

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def _encode(denoiser: Denoiser, x0: torch.Tensor, steps: int | None = None, *, skip: str = "uniform",
            callback: Callable[[dict], None] | None = None, progress: bool = False) -> torch.Tensor:
    grid = grid_of(denoiser.process, steps, skip)
    process = denoiser.process
    count = counted(callback)
    x = x0
    for i in track(range(len(grid)), total=len(grid), description="DDIM encode", enabled=progress):
        # ε at the level reached; the first step, with no level below τ_0, evaluates at τ_0 (x is x_0 there).
        p = denoiser.predict(x, grid[max(i - 1, 0)])
        pred_x0 = p.x0 if i > 0 else x
        a_t, s_t = process.alpha_sigma(grid[i])
        x = a_t * pred_x0 + s_t * p.eps  # DDIM eq. 12 with σ = 0, t increasing
        count({"i": i, "t": grid[i], "x": x, "x0": pred_x0})
    return x


def ddim_encode(*args, **kwargs) -> torch.Tensor:
    """Map data to DDIM latents: the η = 0 update run from clean data up through τ_0 < … < τ_{S−1}.

    Step into ``τ_i`` from the previous level ``s`` (``x_s = x_0``, α = 1, σ = 0 for i = 0), with ε
    evaluated at the point already reached (DDIM §5.4, "reverse of eq. 14"):

        x_{τ_i} = α_{τ_i} · x̂_0 + σ_{τ_i} · ε_θ(x_s, s),   x̂_0 = (x_s − σ_s ε_θ) / α_s,

    where the first step, which has no noise level below τ_0, uses ε_θ(x_0, τ_0).

    Call forms: ``ddim_encode(denoiser, x0, steps=None, *, skip="uniform", callback=None, progress=False)``,
    or ``ddim_encode(eps_fn, schedule, x0, steps, skip="uniform", …)`` (``eps_fn(x, t)`` with int64
    original indices). Returns the latent ``x_T`` ``[B, C, …]`` at τ_{S−1}.
    """
    if args and isinstance(args[0], Denoiser):
        return _encode(*args, **kwargs)
    return _encode_legacy(*args, **kwargs)


def _encode_legacy(eps_fn, schedule, x0, steps, skip="uniform", callback=None, progress=False):
    return _encode(eps_denoiser(eps_fn, schedule), x0, steps, skip=skip, callback=callback, progress=progress)


def ddim_decode(*args, **kwargs) -> torch.Tensor:
    """Map latents back to data: deterministic DDIM (η = 0) over the same sub-sequence as
    :func:`ddim_encode`. Call forms: ``ddim_decode(denoiser, x_T, steps=None, *, skip, clip_x0, callback,
    progress)`` or ``ddim_decode(eps_fn, schedule, x_T, steps, skip="uniform", clip_x0=False, …)``.
    Shapes: ``x_T`` ``[B, C, …]`` → ``[B, C, …]``."""
    if args and isinstance(args[0], Denoiser):
        denoiser, x_T, *rest = args
        return ddim(denoiser, x_T, *rest, eta=0.0, **{"clip_x0": False, **kwargs})
    return _decode_legacy(*args, **kwargs)


def _decode_legacy(eps_fn, schedule, x_T, steps, skip="uniform", clip_x0=False, callback=None, progress=False):
    return ddim(eps_denoiser(eps_fn, schedule), x_T, steps, eta=0.0, skip=skip, clip_x0=clip_x0, callback=callback,
                progress=progress)


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
    eps_fn: EpsFn | Denoiser,
    schedule,
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
        eps_fn, schedule: the model as ``eps_fn(x, t)`` on ``schedule``, or a denoiser (then ``schedule`` is unused).
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
    images = ddim_decode(eps_denoiser(eps_fn, schedule), latents, steps, skip=skip, clip_x0=clip_x0)
    return InterpolationGrid(images, save_image_grid(images, path, nrow=num))
