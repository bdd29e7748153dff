"""Langevin dynamics and annealed Langevin dynamics (Song & Ermon 2019, Alg. 1).

Step conventions — the same step size means two different chains in the NCSN paper and in
its image code, so both are offered and named:

* ``"paper"`` (NCSN Alg. 1, §3.3; also NCSN's toy code):  ``x ← x + (α/2) s(x) + √α z``;
* ``"code"`` (NCSN / NCSNv2 image samplers):                  ``x ← x + α s(x) + √(2α) z``.

Both discretise the Langevin diffusion ``dx = ∇log p dt + √2 dW`` whose stationary law is p:
"paper" with time step α/2, "code" with time step α. So ``step_lr = ε`` under "code" is the
same chain as ``step_lr = 2ε`` under "paper" (NCSNv2's ε = 6.2e-6 is a "code" value; NCSN's
image ε = 2e-5 too; the toy's 0.1 is a "paper" value).

``score_fn(x, sigma)`` returns ``∇_x log p_σ(x)`` (shape of ``x``) and gets σ as a float tensor
``[B]`` with ``x``'s dtype and device. ``callback`` receives, after every update, a dict with keys
``i`` (global step), ``level`` (noise-level index), ``x``, ``sigma`` (float) and ``nfe`` (score
evaluations so far); the final denoising step reports ``level = L`` (one past the last level).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from ..utils.random import randn_like

__all__ = ["langevin", "annealed_langevin", "STEP_CONVENTIONS"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
STEP_CONVENTIONS = ("code", "paper")


def _check_convention(step_convention: str) -> None:
    if step_convention not in STEP_CONVENTIONS:
        raise ValueError(f"step_convention must be one of {STEP_CONVENTIONS}; got {step_convention!r}")


def _langevin_update(x, score, alpha: float, step_convention: str, generator) -> torch.Tensor:
    z = randn_like(x, generator)  # one generator, or one per sample (utils.random)
    if step_convention == "paper":
        return x + 0.5 * alpha * score + math.sqrt(alpha) * z  # NCSN Alg. 1, line 6
    return x + alpha * score + math.sqrt(2.0 * alpha) * z  # NCSN / NCSNv2 image code


def _progress(iterable, enabled: bool, total: int):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total)


@torch.no_grad()
def langevin(
    score_fn: ScoreFn,
    x: torch.Tensor,
    n_steps: int,
    step_size: float,
    sigma: float,
    step_convention: Literal["code", "paper"] = "code",
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Unadjusted Langevin dynamics at one fixed noise level σ (NCSN §2.2).

    Args:
        score_fn: ``score_fn(x, sigma)`` → ``∇ log p_σ(x)``.
        x: ``[B, …]`` starting points.
        n_steps: number of updates (one score evaluation each).
        step_size: α, interpreted by ``step_convention`` (see the module docstring).
        sigma: the level passed to ``score_fn`` (use the smallest level for the data score).
    Returns: ``[B, …]`` the last iterate.
    """
    _check_convention(step_convention)
    if not step_size > 0 or n_steps < 0:
        raise ValueError(f"langevin: need step_size > 0 and n_steps >= 0, got {step_size}, {n_steps}")
    sig = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
    for i in _progress(range(n_steps), progress, n_steps):
        x = _langevin_update(x, score_fn(x, sig), step_size, step_convention, generator)
        if callback is not None:
            callback({"i": i, "level": 0, "x": x, "sigma": float(sigma), "nfe": i + 1})
    return x


@torch.no_grad()
def annealed_langevin(
    score_fn: ScoreFn,
    sigmas,
    x: torch.Tensor,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    step_convention: Literal["code", "paper"] = "code",
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) with NCSNv2's final denoising step.

    For each level ``σ_i`` (largest first), ``n_steps_each`` Langevin updates with step
    ``α_i = ε · σ_i² / σ_L²`` (Alg. 1, line 3); then, if ``denoise``, one Tweedie step
    ``x ← x + σ_L² s(x, σ_L)`` — Tweedie's posterior mean E[x_0 | x] for Gaussian noise of
    std σ_L, as in the NCSNv2 sampler (``denoise: true``; proposed by Jolicoeur-Martineau et
    al. 2020) — which costs one more score evaluation.

    Args:
        score_fn: ``score_fn(x, sigma)`` with sigma float ``[B]`` → ``[B, …]``.
        sigmas: float ``[L]`` strictly decreasing noise levels σ_1 > … > σ_L (list or tensor).
        x: ``[B, …]`` starting noise (NCSN: U[0, 1]; NCSNv2: a draw from N(0, σ_1² I)).
        n_steps_each: T, updates per level.
        step_lr: ε; interpreted by ``step_convention`` (see the module docstring).
        denoise: add the final denoising step.
    Returns: ``[B, …]`` the final sample. NFE = ``L · n_steps_each + denoise``.
    """
    _check_convention(step_convention)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if sigmas.numel() < 1 or bool((sigmas <= 0).any()) or bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise ValueError("annealed_langevin: sigmas must be positive and strictly decreasing (σ_1 > … > σ_L)")
    if not step_lr > 0 or n_steps_each < 1:
        raise ValueError(f"annealed_langevin: need step_lr > 0 and n_steps_each >= 1, got {step_lr}, {n_steps_each}")
    L, B = sigmas.numel(), x.shape[0]
    sigma_L = float(sigmas[-1])
    nfe = 0
    for level in _progress(range(L), progress, L):
        sigma = float(sigmas[level])
        sig = torch.full((B,), sigma, dtype=x.dtype, device=x.device)
        alpha = step_lr * (sigma / sigma_L) ** 2  # Alg. 1, line 3: α_i = ε σ_i² / σ_L²
        for t in range(n_steps_each):
            x = _langevin_update(x, score_fn(x, sig), alpha, step_convention, generator)  # lines 4–6
            nfe += 1
            if callback is not None:
                callback({"i": nfe - 1, "level": level, "x": x, "sigma": sigma, "nfe": nfe})
    if denoise:
        sig = torch.full((B,), sigma_L, dtype=x.dtype, device=x.device)
        x = x + sigma_L**2 * score_fn(x, sig)  # Tweedie: E[x_0 | x] = x + σ_L² ∇log p_σL(x)
        nfe += 1
        if callback is not None:
            callback({"i": nfe - 1, "level": L, "x": x, "sigma": sigma_L, "nfe": nfe})
    return x
