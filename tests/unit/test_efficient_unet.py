"""Imagen's Efficient U-Net (§2.5, App. F.2–F.3) and the paper-size cascade configs: parameter counts on the meta
device against a layer-by-layer closed form and against the papers, resolutions, and where the weights sit."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffzoo.networks.efficient_unet import (
    SKIP_SCALE,
    EfficientUNet,
    parameter_count_closed_form,
)
from diffzoo.networks.super_resolution import SuperResolutionNet


def _net_cfg(name: str):
    from pathlib import Path

    import diffzoo

    return OmegaConf.load(Path(diffzoo.__file__).parent / "conf" / "net" / f"{name}.yaml")


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_matches_the_closed_form_and_sits_at_low_resolution():
    kw = {"in_channels": 6, "out_channels": 3, "base_channels": 128, "channels": (128, 256, 512, 1024),
          "num_res_blocks": (2, 4, 8, 8)}
    with torch.device("meta"):
        net = EfficientUNet(image_size=256, attention_levels=(), cross_attention_levels=(), **kw)
    assert _count(net) == parameter_count_closed_form(**kw)
    # §2.5 "shifting model parameters from high resolution blocks to low resolution blocks": the two lowest levels
    # (32x32 and 16x16 of a 256 input) hold most of the weights
    low = sum(_count(m) for m in (*net.down[2:], *net.up[:2]))
    assert low / _count(net) > 0.9


def test_forward_shapes_skip_scale_and_conditioning():
    torch.manual_seed(0)
    net = EfficientUNet(in_channels=2, out_channels=1, image_size=16, base_channels=16, channels=(16, 32), num_res_blocks=(1, 2),
                        attention_levels=(1,), cross_attention_levels=(1,), num_head_channels=16, num_groups=8, num_classes=3,
                        text_dim=8)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(2, 2, 16, 16), torch.tensor([3.0, 7.0])
    out = net(x, t, y=torch.tensor([0, 3]), context=torch.randn(2, 5, 8), pooled=torch.randn(2, 8))
    assert out.shape == (2, 1, 16, 16)
    assert abs(SKIP_SCALE - 2**-0.5) < 1e-15
    sr = SuperResolutionNet(net, 1, 8)  # the wrapper takes it as it takes the U-Net
    assert sr(torch.randn(2, 1, 16, 16), t, low_res=torch.randn(2, 1, 8, 8), aug_level=torch.tensor([0.0, 0.5])).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("name,size,low", [("imagen_sr256_600m", 256, 64), ("imagen_sr1024_400m", 1024, 256),
                                           ("cdm_imagenet128", 128, 64), ("cdm_imagenet256", 256, 128)])
def test_paper_super_resolution_configs_have_the_papers_resolutions(name, size, low):
    with torch.device("meta"):
        net = instantiate(_net_cfg(name))
    assert (net.image_size, net.low_res_size, net.in_channels, net.backbone.in_channels) == (size, low, 3, 6)


def test_cdm_base_config_is_class_conditional_at_64():
    with torch.device("meta"):
        net = instantiate(_net_cfg("cdm_imagenet64"))
    assert (net.image_size, net.num_classes, net.in_channels) == (64, 1000, 3)


# Why this fails (checked against the paper's App. F.2/F.3 and Figs. A.27-A.29; docs/cascades.md "Paper-size configs"):
# F.3 is F.2 without self-attention, so the two stages share one trunk, and that trunk (levels 128-1024, 2/4/8/8
# ResNetBlocks with their 1x1 convs, resampling convs) already has 442.2M parameters (1024 level 330.9M, 512 level
# 83.2M), above 400M + 10 %. The 200M between the stages cannot be the 1024-level self-attention: it sits once per
# DBlock / UBlock (Fig. A.28 caption; Instruct-Imagen App. A.2.1 adds DBlocks to get "more attention layers"), with
# hidden_size 2 x channels (Fig. A.28) it is 8.4M a layer, 25.2M with k/v of the 4096-d T5 states: 492.6M / 484.2M.
# imagen-pytorch's SRUnet256 / SRUnet1024 (T5 at 4096) count 732.5M / 721.7M, also only 10.8M apart.
@pytest.mark.xfail(strict=True, reason="the SR stages have 471.6M / 463.2M parameters, not Imagen's 600M / 400M, and no "
                   "reading of App. F fits both: their shared trunk alone is 442.2M (> 400M + 10 %), and once-per-block "
                   "1024-level self-attention (Fig. A.28: hidden 2x channels) adds at most ~50M, not the 200M between them")
@pytest.mark.parametrize("name,paper", [("imagen_sr256_600m", 600e6), ("imagen_sr1024_400m", 400e6)])
def test_imagen_super_resolution_sizes_within_ten_percent_of_the_paper(name, paper):
    with torch.device("meta"):
        net = instantiate(_net_cfg(name))
    assert abs(_count(net) - paper) / paper < 0.10
