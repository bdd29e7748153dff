"""Imagen's Efficient U-Net (§2.5, App. F.2–F.3) and the paper-size cascade configs: parameter counts on the meta
device against a layer-by-layer closed form and against the papers, resolutions, and where the weights sit."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffzoo.networks.efficient_unet import SKIP_SCALE, EfficientUNet, parameter_count_closed_form
from diffzoo.networks.super_resolution import SuperResolutionNet


def _net_cfg(name: str):
    from pathlib import Path

    import diffzoo

    return OmegaConf.load(Path(diffzoo.__file__).parent / "conf" / "net" / f"{name}.yaml")


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_matches_the_closed_form_and_sits_at_low_resolution():
    kw = dict(in_channels=6, out_channels=3, base_channels=128, channels=(128, 256, 512, 1024), num_res_blocks=(2, 4, 8, 8))
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


@pytest.mark.xfail(strict=True, reason="built from the App. F.2/F.3 summary (levels 128-1024, 2/4/8/8 blocks), the SR "
                   "stages have 471.6M and 463.2M parameters, not Imagen's 600M / 400M: a detail of App. F is missing")
@pytest.mark.parametrize("name,paper", [("imagen_sr256_600m", 600e6), ("imagen_sr1024_400m", 400e6)])
def test_imagen_super_resolution_sizes_within_ten_percent_of_the_paper(name, paper):
    with torch.device("meta"):
        net = instantiate(_net_cfg(name))
    assert abs(_count(net) - paper) / paper < 0.10
