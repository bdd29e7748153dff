"""Our samplers against HuggingFace diffusers' pipelines on identical weights and identical noise.

The network is a diffusers ``UNet2DModel`` called by both sides, so any difference comes from the
sampler arithmetic. diffusers is a benchmark/test extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffzoo.networks import UNet  # noqa: E402
from diffzoo.samplers import ddim, ddpm  # noqa: E402
from diffzoo.schedules import DiscreteSchedule, linear_betas  # noqa: E402

B = 2


def _tiny_unet2d(seed: int = 0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        norm_num_groups=8, attention_head_dim=None, downsample_padding=0, flip_sin_to_cos=False,
        freq_shift=1, norm_eps=1e-6,
    ).eval()


def _to_unit_nhwc(x: torch.Tensor):
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def unet2d():
    return _tiny_unet2d()


def _eps_fn(unet):
    return lambda x, t: unet(x, t).sample


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim50_matches_diffusers_ddim_pipeline(unet2d, eta):
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    pipe = diffusers.DDIMPipeline(unet2d, scheduler)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        theirs = pipe(batch_size=B, generator=torch.Generator().manual_seed(1), num_inference_steps=50,
                      eta=eta, output_type="np").images
    gen = torch.Generator().manual_seed(1)
    x_T = torch.randn(B, 1, 8, 8, generator=gen)  # the pipeline's first draw
    ours = ddim(_eps_fn(unet2d), DiscreteSchedule(linear_betas(1000)), x_T, steps=50, eta=eta, generator=gen)
    assert abs(_to_unit_nhwc(ours) - theirs).max() < 1e-4


def test_ddpm_matches_diffusers_ddpm_pipeline(unet2d):
    """DDPM Algorithm 2 with σ² = β̃ (diffusers' default ``fixed_small``) and x̂₀ clipped."""
    pipe = diffusers.DDPMPipeline(unet2d, diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"))
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        theirs = pipe(batch_size=B, generator=torch.Generator().manual_seed(2), num_inference_steps=1000,
                      output_type="np").images
    gen = torch.Generator().manual_seed(2)
    x_T = torch.randn(B, 1, 8, 8, generator=gen)
    ours = ddpm(_eps_fn(unet2d), DiscreteSchedule(linear_betas(1000)), x_T, variance="fixedsmall", clip_x0=True, generator=gen)
    assert abs(_to_unit_nhwc(ours) - theirs).max() < 1e-4


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_matched_unet_configs_have_equal_parameter_counts(name):
    """The benchmarks' "matched configuration": our U-Net and the UNet2DModel built from the same
    config (widths, blocks, attention, groups) have exactly the same number of parameters
    (cifar10: DDPM's 35,746,307)."""
    from benchmarks.models import diffusers_unet, num_parameters, our_unet

    with torch.device("meta"):
        ours, theirs = our_unet(name), diffusers_unet(name)
    assert isinstance(ours, UNet)
    assert num_parameters(ours) == num_parameters(theirs)
