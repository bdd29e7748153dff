"""GLIDE's inpainting model (§4.3): zero-initialised extra input channels leave the base model's
output unchanged at step 0, the mask hides what lies under it, and the fine-tuning module starts
from a base checkpoint and samples with a known image."""

from __future__ import annotations

import pytest
import torch

from diffzoo.config import compose_config, register_resolvers
from diffzoo.lit import TextInpaintingModule, build_module
from diffzoo.lit.inpainting import random_box_masks
from diffzoo.networks import UNet
from tests.helpers import randomize_parameters as _randomize
from diffzoo.networks.inpainting import InpaintingUNet

NET = dict(out_channels=2, image_size=8, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
           attention_resolutions=(4,), num_groups=8, dropout=0.0)


def _inputs(B: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x, known = torch.randn(B, 1, 8, 8, generator=gen), torch.randn(B, 1, 8, 8, generator=gen)
    mask = random_box_masks(B, 8, 8, 0.25, 0.75, gen)
    return x, torch.rand(B, generator=gen) * 100, known, mask


def test_zero_initialised_channels_leave_the_base_output_unchanged():
    base = _randomize(UNet(in_channels=1, **NET), seed=0)
    net = InpaintingUNet.from_base(base, **NET).eval()
    x, t, known, mask = _inputs()
    with torch.no_grad():
        want = base(x, t)
        torch.testing.assert_close(net(x, t, masked_image=known, mask=mask), want, rtol=0, atol=0)
        torch.testing.assert_close(net(x, t), want, rtol=0, atol=0)
    w = net.unet.input_conv.weight
    assert w.shape[1] == 3 and torch.count_nonzero(w[:, 1:]) == 0 and torch.equal(w[:, :1], base.input_conv.weight)


def test_the_network_never_sees_what_lies_under_the_mask():
    net = _randomize(InpaintingUNet(in_channels=1, **NET), seed=2)
    x, t, known, mask = _inputs()
    other = known + 5.0 * (1 - mask)  # differs only where the pixel is unknown
    with torch.no_grad():
        a, b = net(x, t, masked_image=known, mask=mask), net(x, t, masked_image=other, mask=mask)
        assert torch.equal(a, b)
        assert (net(x, t, masked_image=known + 5.0 * mask, mask=mask) - a).abs().max() > 1e-3
    with pytest.raises(ValueError, match="together"):
        net(x, t, masked_image=known)
    assert net.in_channels == 1 and net.image_size == 8  # the image's channels, for data-shape checks


def test_random_box_masks_erase_one_rectangle_of_the_asked_size():
    gen = torch.Generator().manual_seed(0)
    m = random_box_masks(500, 16, 12, 0.25, 0.5, gen)
    assert m.shape == (500, 1, 16, 12) and set(m.unique().tolist()) <= {0.0, 1.0}
    erased = (m == 0)[:, 0]
    rows, cols = erased.any(2).sum(1), erased.any(1).sum(1)
    assert torch.equal(erased.sum((1, 2)), rows * cols)  # one axis-aligned rectangle each
    assert rows.min() >= 4 and rows.max() <= 8 and cols.min() >= 3 and cols.max() <= 6
    assert torch.equal(m, random_box_masks(500, 16, 12, 0.25, 0.5, torch.Generator().manual_seed(0)))


def test_fine_tuning_starts_from_the_base_checkpoint(tmp_path):
    register_resolvers()
    base = build_module(compose_config("train", ["experiment=glide_digits"]), (1, 8, 8))
    _randomize(base.ema.shadow, seed=3)
    _randomize(base.text_ema.shadow, seed=4)
    path = tmp_path / "base.ckpt"
    torch.save({"state_dict": base.state_dict(), "diffzoo": {"config": base.run_config, "data_shape": [1, 8, 8]}}, path)
    cfg = compose_config("train", ["experiment=glide_inpaint_digits", f"model.base_ckpt={path}"])
    m = build_module(cfg, (1, 8, 8)).eval()  # eval: no dropout in the raw network
    assert isinstance(m, TextInpaintingModule)
    x, t, known, mask = _inputs(2)
    with torch.no_grad():
        want = base.denoiser().predict(x, t, text="a bold digit seven").eps
        got = m.denoiser().predict(x, t, text="a bold digit seven", masked_image=known, mask=mask).eps
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        raw = m.denoiser(use_ema=False).predict(x, t, text="a bold digit seven").eps  # raw weights start there too
        torch.testing.assert_close(raw, want, rtol=0, atol=1e-6)
        s = m.sample(2, sampler={"name": "ddim", "steps": 3}, generator=torch.Generator().manual_seed(0),
                     cond={"text": "a thin digit one", "masked_image": known, "mask": mask})
    assert s.shape == (2, 1, 8, 8) and torch.isfinite(s).all()
    with pytest.raises(ValueError, match="takes no condition 'y'"):
        m.sample(2, cond={"y": torch.zeros(2, dtype=torch.long)})


def test_mask_edge_jump_closed_forms():
    from diffzoo.claims.papers.text_to_image import mask_edge_jump

    mask = torch.ones(2, 1, 6, 6)
    mask[:, :, 2:4, 1:5] = 0  # a 2×4 hole: 2·2 vertical-neighbour edges... 4 above + 4 below + 2 left + 2 right = 12 pairs
    filled = torch.where(mask.bool(), torch.zeros(2, 1, 6, 6), torch.ones(2, 1, 6, 6))
    filled[1] *= 0.25  # the second image's hole is 0.25 above its surroundings
    torch.testing.assert_close(mask_edge_jump(filled, mask), torch.tensor([1.0, 0.25]))
    ramp = torch.arange(6.0).expand(2, 1, 6, 6).clone()  # x = column index: jumps of 1 horizontally, 0 vertically
    torch.testing.assert_close(mask_edge_jump(ramp, mask), torch.tensor([4 / 12, 4 / 12]))
