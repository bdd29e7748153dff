"""A text-conditional super-resolution stage (Imagen §2.4): trained on the captions and on q(z_s | D(x)), sampled
for captions and a low-resolution batch, with classifier-free guidance over the caption."""

import functools
import math

import torch

from diffzoo.guidance import ClassifierFreeGuidance
from diffzoo.lit.super_resolution import upsample_indices
from diffzoo.lit.text_super_resolution import TextSuperResolutionModule
from diffzoo.networks import UNet
from diffzoo.networks.super_resolution import SuperResolutionNet
from diffzoo.objectives import SimpleLoss
from diffzoo.objectives.conditioning_augmentation import ConditioningAugmentation, GaussianNoiseAugmentation
from diffzoo.samplers import SamplerSpec
from diffzoo.schedules import DiscreteSchedule, linear_betas
from tests.unit.test_text_unet import D_TEXT, NET, TEXT, TinyFrozen, _randomize


def _module(drop: float = 0.2):
    torch.manual_seed(0)
    backbone = UNet(**{**NET, "in_channels": 2}, **TEXT["glide"])
    return TextSuperResolutionModule(
        net=_randomize(SuperResolutionNet(backbone, 1, 4)), schedule=DiscreteSchedule(linear_betas(50)),
        objective=SimpleLoss(), sampler=SamplerSpec("ddpm", steps=3), optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        ema_decay=None, text_encoder=TinyFrozen(), caption_drop_prob=drop,
        augmentation=ConditioningAugmentation(GaussianNoiseAugmentation(train_levels=(0.0, 0.5), p_zero=0.2, sample_level=0.2)))


def test_text_stage_trains_on_captions_and_the_noised_low_res():
    m = _module()
    seen = {}
    forward = m.net.forward

    def spy(x, t, **cond):
        seen.update(cond)
        return forward(x, t, **cond)

    m.net.forward = spy
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    captions = ["a bold digit seven", "a thin digit one"] * 32
    loss = m.training_step({"x": x, "text": captions}, 0)
    loss.backward()
    assert torch.isfinite(loss) and seen["context"].shape[-1] == D_TEXT and seen["low_res"].shape == (64, 1, 4, 4)
    s = seen["aug_level"].double()
    low = torch.nn.functional.avg_pool2d(x, 2).double()
    noised = s > 0
    t = m.augmentation.noise.time_of(s[noised])
    a, sg = m.schedule.alpha(t)[:, None], m.schedule.sigma(t)[:, None]
    eps = (seen["low_res"][noised].double().flatten(1) - a * low[noised].flatten(1)) / sg
    assert torch.equal(seen["low_res"][~noised].double(), low[~noised])
    assert abs(float(eps.mean())) < 5 / math.sqrt(eps.numel())  # z_s = α(t_s) D(x) + σ(t_s) ε, ε standard normal


def test_text_stage_samples_for_captions_with_and_without_guidance():
    m = _module().eval()
    low = torch.rand(3, 1, 4, 4) * 2 - 1
    text = ["a bold digit seven", "a thin digit one", "a digit seven"]
    plain = upsample_indices(m, low, range(3), seed=1, cond={"text": text}).x
    assert plain.shape == (3, 1, 8, 8)
    other = upsample_indices(m, low, range(3), seed=1, cond={"text": ["a digit one"] * 3}).x
    assert not torch.allclose(plain, other)  # the caption reaches the network
    guided = upsample_indices(m, low, range(3), seed=1, cond={"text": text}, guidance=ClassifierFreeGuidance(2.0)).x
    assert guided.shape == plain.shape and not torch.allclose(guided, plain)
    assert torch.allclose(m.upsample(low, text=text, seed=1), plain, atol=1e-6)
