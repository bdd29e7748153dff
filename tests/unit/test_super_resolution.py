"""The super-resolution stage of a cascade: the network wrapper (CDM §2; Imagen §2.4) and the module that
trains it on q(z_s | D(x)) and samples it for a low-resolution batch."""

import math
from functools import partial

import pytest
import torch

from diffzoo.data.downsampled import area_downsample
from diffzoo.errors import ConfigError
from diffzoo.guidance import ClassifierFreeGuidance
from diffzoo.lit.super_resolution import SuperResolutionModule, upsample_indices
from diffzoo.networks import UNet
from diffzoo.networks.super_resolution import SuperResolutionNet
from diffzoo.objectives import ObjectiveOutput, SimpleLoss
from diffzoo.objectives.conditioning_augmentation import ConditioningAugmentation, GaussianNoiseAugmentation
from diffzoo.samplers import SamplerSpec
from diffzoo.schedules import DiscreteSchedule, linear_betas


def _net(num_classes=None, channels=1, size=16, low=8) -> SuperResolutionNet:
    torch.manual_seed(0)
    backbone = UNet(in_channels=2 * channels, out_channels=channels, image_size=size, base_channels=16,
                    channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(), num_groups=8, dropout=0.0,
                    num_classes=num_classes)
    net = SuperResolutionNet(backbone, channels, low)
    with torch.no_grad():  # the U-Net's output conv starts at zero: give every weight a value
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_the_network_reads_the_low_res_image_and_the_level():
    net = _net(num_classes=3).eval()
    x, t = torch.randn(4, 1, 16, 16), torch.full((4,), 10.0)
    z, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])  # 3 = the null class
    out = net(x, t, low_res=z, aug_level=torch.zeros(4), y=y)
    assert out.shape == (4, 1, 16, 16)
    assert not torch.allclose(out, net(x, t, low_res=torch.randn(4, 1, 8, 8), aug_level=torch.zeros(4), y=y))
    assert not torch.allclose(out, net(x, t, low_res=z, aug_level=torch.full((4,), 0.3), y=y))
    assert torch.allclose(out, net(x, t, low_res=z, y=y))  # no level = level 0
    # the level enters only through added_emb: the backbone called with E(s) gives the same output
    up = torch.nn.functional.interpolate(z, size=(16, 16), mode="bilinear", align_corners=False)
    direct = net.backbone(torch.cat([x, up], 1), t, y=y, added_emb=net.aug_embedding(torch.zeros(4)))
    assert torch.allclose(out, direct, atol=1e-6)


def test_the_network_refuses_wrong_shapes_and_configs():
    net = _net()
    with pytest.raises(ValueError, match="low_res must have shape"):
        net(torch.randn(2, 1, 16, 16), torch.zeros(2), low_res=torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match="low_res is required"):
        net(torch.randn(2, 1, 16, 16), torch.zeros(2))
    with pytest.raises(ConfigError, match="upsample_mode"):
        SuperResolutionNet(net.backbone, 1, 8, upsample_mode="area")
    with pytest.raises(ConfigError, match="backbone.in_channels"):
        SuperResolutionNet(net.backbone, 2, 8)
    with pytest.raises(ConfigError, match="low_res_size"):
        SuperResolutionNet(net.backbone, 1, 16)


class Recording(torch.nn.Module):
    """An objective that records the condition the network would get."""

    prediction = "eps"

    def forward(self, net, schedule, x0, **cond):
        self.cond = cond
        loss = (x0 * 0).sum() + sum(p.sum() * 0 for p in net.parameters())
        return ObjectiveOutput(loss, torch.zeros(x0.shape[0]), torch.zeros(x0.shape[0]))


def _module(objective=None, augmentation=None, conditional=False, cond_drop_prob=0.0, T=100):
    schedule = DiscreteSchedule(linear_betas(T, 1e-4, 0.2))
    return SuperResolutionModule(
        _net(num_classes=3 if conditional else None), schedule, objective or SimpleLoss(),
        SamplerSpec("ddpm", steps=3), partial(torch.optim.Adam, lr=1e-3), ema_decay=None, conditional=conditional,
        cond_drop_prob=cond_drop_prob, augmentation=augmentation)


def test_the_stage_trains_on_the_forward_marginal_of_the_area_downsampled_image():
    """The issue's check: at level s the network sees exactly q(z_s | D(x)) = N(α(t_s) D(x), σ(t_s)² I)."""
    rec = Recording()
    aug = ConditioningAugmentation(GaussianNoiseAugmentation(train_levels=(0.0, 0.6), p_zero=0.25))
    module = _module(rec, aug)
    x = torch.rand(1024, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    module.training_step({"x": x}, 0)
    z, s = rec.cond["low_res"], rec.cond["aug_level"].double()
    low = area_downsample(x, 8)
    zero = s == 0
    assert 0 < int(zero.sum()) < 1024 and torch.equal(z[zero], low[zero])
    t = aug.noise.time_of(s[~zero])
    a, sg = module.schedule.alpha(t)[:, None], module.schedule.sigma(t)[:, None]
    eps = (z[~zero].double().flatten(1) - a * low[~zero].double().flatten(1)) / sg
    n = eps.numel()
    assert abs(float(eps.mean())) < 5 / math.sqrt(n) and abs(float(eps.var()) - 1) < 5 * math.sqrt(2 / n)
    # the augmentation draws are the step's own (seeded): the same step draws the same levels
    module.training_step({"x": x}, 0)
    assert torch.equal(rec.cond["aug_level"].double(), s)


def test_a_training_step_backpropagates_into_the_level_embedding():
    module = _module(conditional=True, cond_drop_prob=0.2,
                     augmentation=ConditioningAugmentation(GaussianNoiseAugmentation(train_levels=(0.0, 0.3))))
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    loss = module.training_step({"x": x, "y": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}, 0)
    loss.backward()
    assert torch.isfinite(loss) and module.net.aug_mlp[0].weight.grad is not None
    assert module.net.aug_mlp[0].weight.grad.abs().sum() > 0


def test_upsampling_is_per_sample_deterministic_and_guidance_doubles_the_condition():
    module = _module(conditional=True, cond_drop_prob=0.1,
                     augmentation=ConditioningAugmentation(GaussianNoiseAugmentation(sample_level=0.2))).eval()
    low = torch.rand(4, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 1, 2, 1])
    full = upsample_indices(module, low, range(4), seed=3, labels=y).x
    part = upsample_indices(module, low[2:], [2, 3], seed=3, labels=y[2:]).x
    assert full.shape == (4, 1, 16, 16) and torch.allclose(full[2:], part, atol=1e-5)  # sample i: (seed, i) only
    guided = upsample_indices(module, low, range(4), seed=3, labels=y, guidance=ClassifierFreeGuidance(2.0)).x
    assert guided.shape == full.shape and not torch.allclose(guided, full)
    assert not torch.allclose(full, upsample_indices(module, low, range(4), seed=3, labels=y, aug_level=0.0).x)


def test_the_module_needs_a_super_resolution_network():
    schedule = DiscreteSchedule(linear_betas(10, 1e-4, 0.2))
    with pytest.raises(ConfigError, match="SuperResolutionNet"):
        SuperResolutionModule(UNet(1, 1, 8, 16, (1,), 1, (), num_groups=8), schedule, SimpleLoss(),
                              SamplerSpec("ddpm"), partial(torch.optim.Adam))


def test_area_downsampled_data_serves_the_block_means_of_the_wrapped_images(tmp_path):
    from diffzoo.data import FashionMNISTDataModule
    from diffzoo.data.downsampled import AreaDownsampledDataModule
    from diffzoo.data.synthetic import write_fake_fashion_mnist

    write_fake_fashion_mnist(tmp_path)
    full = FashionMNISTDataModule(root=str(tmp_path), image_size=32, system_dir=None)
    small = AreaDownsampledDataModule(FashionMNISTDataModule(root=str(tmp_path), image_size=32, system_dir=None), 8, batch_size=4)
    assert small.data_shape == (1, 8, 8) and small.name == "fashion_mnist_8px" and small.num_classes == 10
    full.setup("fit")
    small.setup("fit")
    idx = [0, 3, 5]
    big, low = full.train_set.__getitems__(idx), small.train_set.__getitems__(idx)
    assert torch.allclose(low["x"], area_downsample(big["x"], 8), atol=1e-6) and torch.equal(low["y"], big["y"])
    with pytest.raises(ValueError, match="resolution"):
        AreaDownsampledDataModule(full, 5)
