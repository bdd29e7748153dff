"""``python -m diffzoo.edit``: inpainting keeps the known pixels (the sampler puts them back exactly
on its last step), writes the grid and tensors; colourisation keeps the grey level; bad requests
name the key and the valid values."""

import pytest
import torch

from diffzoo.config import compose_config
from diffzoo.data.synthetic import write_fake_cifar10
from diffzoo.edit import edit, make_mask
from diffzoo.errors import ConfigError
from diffzoo.utils.random import per_sample_generators
from tests.integration.score_ckpt import TINY_UNET, write_score_checkpoint

FAST = ["sampler.steps=8", "progress=false", "accelerator=cpu"]  # NFE budget: 4 PC steps of predictor + corrector


def _cfg(ckpt, out, *extra):
    return compose_config(config_name="edit", overrides=[f"ckpt_path={ckpt}", f"out={out}", *FAST, *extra])


@pytest.mark.parametrize("experiment, mask", [("sde_vp_digits", "center"), ("sde_ve_digits", "random"), ("sde_vp_digits", "left_half"),
                                              ("ddpm_digits", "center")])  # a DDPM model: PC on the VP SDE of its β table
def test_inpainting_keeps_known_pixels(tmp_path, experiment, mask):
    ckpt = write_score_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", experiment, TINY_UNET)
    summary = edit(_cfg(ckpt, tmp_path / "out", "task=inpaint", f"mask={mask}", "n=6"))
    assert (tmp_path / "out" / "grid.png").is_file() and summary["nfe"] > 0
    t = torch.load(tmp_path / "out" / "edit.pt", weights_only=True)
    x, out, keep = t["original"], t["completed"], t["mask"].expand_as(t["original"])
    assert x.shape == out.shape == (6, 1, 8, 8) and 0 < int(keep.sum()) < keep.numel()
    # exact in the model's coordinates; VE maps [0, 1] back to [-1, 1] (2u - 1): float rounding only
    torch.testing.assert_close(out[keep], x[keep], rtol=0, atol=1e-6)
    assert not torch.allclose(out[~keep], x[~keep])  # the unknown pixels were generated
    torch.testing.assert_close(t["masked"][~keep], torch.zeros_like(x[~keep]))


def test_random_masks_are_seeded_per_example():
    shape = (3, 1, 8, 8)
    a = make_mask("random", shape, 0.5, per_sample_generators(0, range(3), stream="mask"))
    b = make_mask("random", (1, 1, 8, 8), 0.5, per_sample_generators(0, [2], stream="mask"))
    assert torch.equal(a[2:], b) and not torch.equal(a[0], a[1])
    centre = make_mask("center", shape)
    assert not centre[0, 0, 2:6, 2:6].any() and centre.sum() == 3 * (64 - 16)


def test_colorize_keeps_the_grey_level(tmp_path):
    data = write_fake_cifar10(tmp_path / "data", per_batch=8)
    net = ["net.in_channels=3", "net.out_channels=3", "net.image_size=32", "net.num_groups=8", *TINY_UNET]
    ckpt = write_score_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "sde_vp_digits",
                                  ["data=cifar10", f"paths.data_dir={data}", *net], shape=(3, 32, 32))
    edit(_cfg(ckpt, tmp_path / "out", "task=colorize", "n=2", "sampler.steps=6"))
    t = torch.load(tmp_path / "out" / "edit.pt", weights_only=True)
    torch.testing.assert_close(t["completed"].mean(1), t["original"].mean(1), rtol=0, atol=1e-5)


def test_bad_requests_name_the_key(tmp_path):
    ckpt = write_score_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "sde_vp_digits", TINY_UNET)
    with pytest.raises(ConfigError, match="colour images"):
        edit(_cfg(ckpt, tmp_path / "out", "task=colorize", "n=2"))
    with pytest.raises(ConfigError, match=r"mask='diagonal' is not one of \['center', 'left_half', 'random'\]"):
        edit(_cfg(ckpt, tmp_path / "out", "task=inpaint", "mask=diagonal"))
    with pytest.raises(ConfigError, match=r"sampler.bogus is not an option of sampler=pc; valid: \['steps', 'corrector'"):
        edit(_cfg(ckpt, tmp_path / "out", "+sampler.bogus=1"))
    with pytest.raises(ConfigError, match="steps=4 was retired: use sampler.steps=4"):
        edit(_cfg(ckpt, tmp_path / "out", "steps=4"))
