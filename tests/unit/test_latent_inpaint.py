"""Replacement inpainting of images through a model's own coordinates (``replace_inpaint_images``): the
pixel case, and a latent case with a stand-in first stage on a 2× smaller grid (LDM's latent inpainting)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffzoo.denoisers import Denoiser
from diffzoo.samplers.inpaint import model_grid_mask, replace_inpaint_images
from diffzoo.schedules import DiscreteSchedule, linear_betas

SCALE = 3.0  # the stand-in encoder's latent scale (the role of LDM's s)


def _denoiser(latent: bool) -> Denoiser:
    """A zero-ε network (x̂₀ = x_t / α) on a 100-step schedule; ``latent``: coordinates are ``SCALE`` × the
    2×2 block means (the stand-in encoder) and decode by nearest upsampling."""
    schedule = DiscreteSchedule(linear_betas(100, 1e-4, 0.05))

    def net(x, t):
        return torch.zeros_like(x)

    if not latent:
        return Denoiser(net, schedule, "eps")
    return Denoiser(net, schedule, "eps", data_range=(-float("inf"), float("inf")), model_shape=(1, 4, 4),
                    from_data=lambda x: SCALE * F.avg_pool2d(x, 2), to_data=lambda z: F.interpolate(z / SCALE, scale_factor=2))


def _images_and_mask():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=gen) * 2 - 1
    mask = torch.ones(3, 1, 8, 8)
    mask[:, :, 2:7, 3:8] = 0  # an erased box that cuts 2x2 blocks
    return x0, mask


def test_model_grid_mask_keeps_only_fully_known_blocks():
    mask = torch.ones(1, 1, 4, 4)
    mask[0, 0, 0, 0] = 0  # one pixel of the top-left block erased
    grid = model_grid_mask(mask, (2, 2))
    assert grid.tolist() == [[[[0.0, 1.0], [1.0, 1.0]]]]
    assert torch.equal(model_grid_mask(mask, (4, 4)), mask)  # f = 1: the mask itself


def test_pixel_inpainting_keeps_known_pixels():
    den = _denoiser(latent=False)
    x0, mask = _images_and_mask()
    x_T = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    out = replace_inpaint_images(den, x_T, x0, mask, steps=10, generator=torch.Generator().manual_seed(2))
    known = mask.bool().expand_as(x0)
    assert torch.equal(out[known], x0[known]) and torch.isfinite(out).all()


def test_latent_inpainting_keeps_known_pixels_and_never_reads_erased_ones():
    den = _denoiser(latent=True)
    x0, mask = _images_and_mask()
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    out = replace_inpaint_images(den, x_T, x0, mask, steps=10, generator=torch.Generator().manual_seed(2))
    assert out.shape == x0.shape
    known = mask.bool().expand_as(x0)
    assert torch.equal(out[known], x0[known])
    # erased content changed: the result is the same (nothing of it reaches the encoder)
    other = torch.where(known, x0, torch.full_like(x0, 0.77))
    again = replace_inpaint_images(den, x_T, other, mask, steps=10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, again)


def test_latent_inpainting_rejects_a_mismatched_start():
    den = _denoiser(latent=True)
    x0, mask = _images_and_mask()
    try:
        replace_inpaint_images(den, torch.randn(3, 1, 8, 8), x0, mask, steps=5)
    except ValueError as e:
        assert "x_T" in str(e)
    else:
        raise AssertionError("a pixel-sized x_T for a latent model must be refused")
