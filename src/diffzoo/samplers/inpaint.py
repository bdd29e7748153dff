"""Conditioning the PC sampler on known values: inpainting and colourisation (Score SDE App. I).

Known coordinates ``y`` of ``x_0`` are imposed at every time ``t`` by replacing those coordinates
of the current sample with a draw of the forward marginal ``p_0t(y(t) | y) = N(α(t)y, σ(t)²I)``
after each corrector and predictor update; the reverse SDE then fills the unknown coordinates
(Score SDE App. I.2, the "imputation" sampler). Colourisation is the same thing in a rotated
colour basis: an orthonormal per-pixel channel transform whose first axis is ``(1, …, 1)/√C``
turns the grey level (the channel mean) into one known coordinate, ``√C·gray`` (App. I.3).
Because the transform is orthonormal and the SDEs are isotropic, the forward marginal in the
rotated basis is the same Gaussian kernel.

Both samplers return the known coordinates exactly: the last step puts ``y`` (resp. the grey
level) back in place of its noisy estimate.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..denoisers import Denoiser, as_sde_denoiser, score_denoiser
from ..utils.random import GeneratorLike, randn_like
from ..utils.tensors import bcast
from .pc import PCStep, pc

__all__ = ["inpaint", "replace_inpaint", "replace_inpaint_images", "model_grid_mask", "colorize", "decorrelating_basis"]

Transform = Callable[[torch.Tensor], torch.Tensor]
PC_OPTIONS = ("predictor", "corrector", "snr", "n_corrector", "eps", "denoise", "step_norm")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _conditioned_pc(denoiser: Denoiser, x_T, known, keep, to_basis: Transform, from_basis: Transform, steps, pc_kwargs,
                    generator):
    """PC sampling with ``to_basis(x)[keep]`` tied to ``known`` (values in that basis)."""
    sde = as_sde_denoiser(denoiser).process

    def impose(u: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return torch.where(keep, value, u)

    def project(x: torch.Tensor, x_mean: torch.Tensor, t: torch.Tensor) -> PCStep:
        # App. I.2: replace the known part with a sample of p_0t(· | y) at the current t.
        mean, std = sde.marginal_prob(known, t)
        noisy = mean + bcast(std, known) * randn_like(known, generator)
        return PCStep(from_basis(impose(to_basis(x), noisy)), from_basis(impose(to_basis(x_mean), mean)))

    t_T = torch.full((x_T.shape[0],), sde.T, device=x_T.device, dtype=x_T.dtype)
    x_start = project(x_T, x_T, t_T).x
    out = pc(denoiser, x_start, steps, project=project, generator=generator, **pc_kwargs)
    return from_basis(impose(to_basis(out), known))


def _split(args, kwargs):
    """The model as a denoiser and the remaining arguments, for either call form: ``(denoiser, x_T, …)``
    or the earlier ``(score_fn, sde, x_T, …)``."""
    if args and isinstance(args[0], Denoiser):
        return args[0], list(args[1:]), kwargs
    score_fn, sde, *rest = args
    return score_denoiser(score_fn, sde), rest, kwargs


def inpaint(*args, **kwargs) -> torch.Tensor:
    """Fill the unknown values of ``y`` with the PC sampler (Score SDE App. I.2).

    Call forms: ``inpaint(denoiser, x_T, y, mask, steps=None, *, predictor, corrector, snr, n_corrector,
    eps, denoise, step_norm, generator, callback, progress)``, or the earlier
    ``inpaint(score_fn, sde, x_T, y, mask, predictor=…, …)``.

    Args:
        x_T: ``[B, …]`` starting noise (the process's ``prior_sample``).
        y: ``[B, …]`` data with the known values (the rest is ignored), in the model's coordinates.
        mask: bool/0-1 tensor broadcastable to ``y``; true (1) where ``y`` is known.
        steps: NFE budget of the PC sampler (``None``: the SDE's ``N`` time steps).
        the rest: passed to :func:`~diffzoo.samplers.pc.pc`.
    Returns: ``[B, …]`` sample equal to ``y`` wherever ``mask`` is true.
    """
    denoiser, rest, kwargs = _split(args, kwargs)
    return _inpaint(denoiser, *rest, **kwargs)


def _inpaint(denoiser, x_T, y, mask, steps=None, generator: GeneratorLike = None, **pc_kwargs):
    keep = torch.broadcast_to(mask.to(device=y.device).bool(), y.shape)
    return _conditioned_pc(denoiser, x_T, y, keep, _identity, _identity, steps, pc_kwargs, generator)


@torch.no_grad()
def replace_inpaint(denoiser: Denoiser, x_T: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
                    generator: GeneratorLike = None, **ddpm_kwargs) -> torch.Tensor:
    """Replacement inpainting in DDPM ancestral sampling, for any forward process (no SDE limit needed).

    The imputation of Score SDE App. I.2 in discrete time — the baseline GLIDE §4.3 compares its
    fine-tuned model with: the known coordinates of ``x_T`` and of every later ``x_s`` are replaced by
    a draw of the forward marginal ``q(x_s | y) = N(α_s y, σ_s² I)``, and the last step puts ``y``
    itself back. The unknown coordinates follow the model's ancestral chain (:func:`~diffzoo.samplers.ddpm.ddpm`).

    Args:
        denoiser: the model (a :class:`~diffzoo.denoisers.Denoiser`, conditions bound).
        x_T: ``[B, …]`` starting noise; ``y``: ``[B, …]`` data with the known values, model coordinates;
        mask: bool / 0-1, broadcastable to ``y``, true (1) where ``y`` is known.
        steps, generator, ddpm_kwargs: as :func:`~diffzoo.samplers.ddpm.ddpm` (``variance``, ``clip_x0``, …).
    Returns: ``[B, …]`` equal to ``y`` wherever ``mask`` is true.
    """
    from .ddpm import ddpm

    keep = torch.broadcast_to(mask.to(device=y.device).bool(), y.shape)
    process = denoiser.process

    def project(x: torch.Tensor, t) -> torch.Tensor:
        if t is None:
            return torch.where(keep, y, x)
        alpha, sigma = process.alpha_sigma(torch.as_tensor(t, dtype=y.dtype, device=y.device).expand(y.shape[0]))
        noisy = bcast(alpha, y) * y + bcast(sigma, y) * randn_like(y, generator)
        return torch.where(keep, noisy, x)

    return ddpm(denoiser, x_T, steps, generator=generator, project=project, **ddpm_kwargs)


def model_grid_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A pixel mask ``[B, 1, H, W]`` (1 = known) on a model grid of ``size = (h, w)`` with ``H = f·h``,
    ``W = f·w``: a cell is known only when every pixel of its ``f × f`` block is (a min-pool), so no
    latent cell is pinned to a value that depends on an unknown pixel's block. ``f = 1`` returns the mask."""
    H, W = mask.shape[-2:]
    h, w = size
    if H % h or W % w or H // h != W // w:
        raise ValueError(f"model_grid_mask: a {H}x{W} mask does not map onto a {h}x{w} grid by one integer factor")
    f = H // h
    m = mask.to(torch.float32)
    return m if f == 1 else -torch.nn.functional.max_pool2d(-m, f)


@torch.no_grad()
def replace_inpaint_images(denoiser: Denoiser, x_T: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
                           generator: GeneratorLike = None, **ddpm_kwargs) -> torch.Tensor:
    """Replacement inpainting of images for a model that samples in other coordinates — a latent
    diffusion model's ``z = s·E(x)`` on an ``f``-times smaller grid, or the pixels themselves.

    Latent diffusion inpaints by replacement in latent space (Rombach et al. 2022: the ``mask`` / ``x0``
    arguments of the DDIM sampler of their code, used for the inpainting of ``LatentDiffusion.log_images``):

    1. the known part is encoded, ``y = from_data(x0 · mask)`` (unknown pixels are set to 0 first, the
       project's ``masked_image`` convention, so nothing of the erased content reaches the encoder);
    2. the mask moves to the model grid by :func:`model_grid_mask` (a cell is known iff its whole
       ``f × f`` block is);
    3. :func:`replace_inpaint` fills the unknown cells; the result is decoded, ``x = to_data(z)``;
    4. the known pixels are pasted back, ``mask · x0 + (1 − mask) · x`` (as LDM's inpainting script
       composes its output).

    Args:
        denoiser: the model (conditions bound), with ``to_data`` / ``from_data`` (identity for pixel models).
        x_T: ``[B, …]`` starting noise in the model's coordinates (``model_shape``).
        x0: ``[B, C, H, W]`` images in data coordinates ``[−1, 1]``; only the known pixels are read.
        mask: ``[B, 1, H, W]`` (or ``[B, C, H, W]`` with equal channels), 1 / true where known.
        steps, generator, ddpm_kwargs: as :func:`replace_inpaint`.
    Returns: ``[B, C, H, W]`` images in data coordinates, equal to ``x0`` wherever ``mask`` is 1.
    """
    m = mask.to(device=x0.device, dtype=x0.dtype)[:, :1]
    y = denoiser.from_data(x0 * m)
    if y.shape != x_T.shape:
        raise ValueError(f"replace_inpaint_images: x_T {tuple(x_T.shape)} does not match the encoded images {tuple(y.shape)}")
    keep = model_grid_mask(m, tuple(x_T.shape[-2:])).to(y.dtype).bool()
    z = replace_inpaint(denoiser, x_T, y, keep, steps=steps, generator=generator, **ddpm_kwargs)
    return m * x0 + (1 - m) * denoiser.to_data(z)


def decorrelating_basis(channels: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Orthonormal ``[C, C]`` matrix ``Q`` whose first column is ``(1, …, 1)/√C``; the
    coordinates ``Qᵀx`` of a pixel ``x`` have the (scaled) grey level ``√C·mean(x)`` first and
    the colour in the remaining ``C − 1`` (Score SDE App. I.3)."""
    seed = torch.eye(channels, dtype=torch.float64)
    seed[:, 0] = 1.0
    q, _ = torch.linalg.qr(seed)
    q = q * torch.sign(q[0, 0])  # make the first column +1/√C
    return q.to(dtype=dtype, device=device)


def colorize(*args, **kwargs) -> torch.Tensor:
    """Colour images whose channel mean is ``gray`` with the PC sampler (Score SDE App. I.3).

    Call forms: ``colorize(denoiser, x_T, gray, steps=None, *, …)`` or the earlier
    ``colorize(score_fn, sde, x_T, gray, …)``.

    Args:
        x_T: ``[B, C, …]`` starting noise (channels on dim 1).
        gray: ``[B, 1, …]`` channel mean of the target images (model coordinates).
        other arguments: as for :func:`inpaint`.
    Returns: ``[B, C, …]`` images whose mean over channels equals ``gray`` (to float rounding).
    """
    denoiser, rest, kwargs = _split(args, kwargs)
    return _colorize(denoiser, *rest, **kwargs)


def _colorize(denoiser, x_T, gray, steps=None, generator: GeneratorLike = None, **pc_kwargs):
    C = x_T.shape[1]
    if gray.shape[1] != 1 or gray.shape[0] != x_T.shape[0] or gray.shape[2:] != x_T.shape[2:]:
        raise ValueError(f"colorize: gray must be [B, 1, …] matching x_T {tuple(x_T.shape)}, got {tuple(gray.shape)}")
    Q = decorrelating_basis(C, dtype=x_T.dtype, device=x_T.device)

    def to_basis(x: torch.Tensor) -> torch.Tensor:  # per pixel: u = Qᵀx
        return torch.einsum("bc...,cd->bd...", x, Q)

    def from_basis(u: torch.Tensor) -> torch.Tensor:  # x = Q u
        return torch.einsum("bd...,cd->bc...", u, Q)

    known = torch.zeros_like(x_T)
    known[:, :1] = gray.to(x_T.dtype) * C**0.5  # first coordinate = (Σ_c x_c)/√C = √C·gray
    keep = torch.zeros_like(x_T, dtype=torch.bool)
    keep[:, :1] = True
    return _conditioned_pc(denoiser, x_T, known, keep, to_basis, from_basis, steps, pc_kwargs, generator)
