"""Cascade pipelines over small untrained stages: the stages chain or are refused naming the key, sample i of
every stage depends on (seed, i) only, truncation hands z_s on, and the sample / eval configs compose."""

from functools import partial

import pytest
import torch

from diffzoo.errors import ConfigError
from diffzoo.guidance import ClassifierFreeGuidance
from diffzoo.lit import DiffusionModule
from diffzoo.lit.super_resolution import SuperResolutionModule
from diffzoo.networks import UNet
from diffzoo.networks.super_resolution import SuperResolutionNet
from diffzoo.objectives import SimpleLoss
from diffzoo.objectives.conditioning_augmentation import ConditioningAugmentation, GaussianNoiseAugmentation
from diffzoo.pipelines import Stage, check_stages, run_cascade
from diffzoo.samplers import SamplerSpec
from diffzoo.schedules import DiscreteSchedule, linear_betas

T = 50


def _unet(cin, size, classes=3):
    return UNet(in_channels=cin, out_channels=1, image_size=size, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(), num_groups=8, dropout=0.0, num_classes=classes)


def _perturbed(module):
    with torch.no_grad():
        for p in module.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


@pytest.fixture(scope="module")
def stages():
    torch.manual_seed(0)
    schedule = DiscreteSchedule(linear_betas(T, 1e-4, 0.3))
    common = dict(sampler=SamplerSpec("ddpm", steps=4), optimizer=partial(torch.optim.Adam), ema_decay=None,
                  conditional=True, cond_drop_prob=0.1)
    base = _perturbed(DiffusionModule(_unet(1, 4), schedule, SimpleLoss(), **common))
    sr = [_perturbed(SuperResolutionModule(SuperResolutionNet(_unet(2, 2 * s), 1, s), schedule, SimpleLoss(),
                                           augmentation=ConditioningAugmentation(GaussianNoiseAugmentation(sample_level=0.3)),
                                           **common)) for s in (4, 8)]
    return [Stage("base4", base, base.sampler), Stage("sr8", sr[0], sr[0].sampler), Stage("sr16", sr[1], sr[1].sampler)]


def test_a_cascade_draws_every_stage_per_sample(stages):
    check_stages(stages)
    y = torch.tensor([0, 1, 2, 0])
    full = run_cascade(stages, range(4), seed=5, labels=y)
    assert [tuple(full.outputs[s.name].shape) for s in stages] == [(4, 1, 4, 4), (4, 1, 8, 8), (4, 1, 16, 16)]
    assert all(full.nfe[s.name] == 4 for s in stages) and not any(full.truncated.values())
    part = run_cascade(stages, [2, 3], seed=5, labels=y[2:])
    for s in stages:  # sample i of every stage: (seed, stage, i) only, whatever the batch
        assert torch.allclose(full.outputs[s.name][2:], part.outputs[s.name], atol=1e-5), s.name
    other = run_cascade(stages, range(4), seed=6, labels=y)
    assert not torch.allclose(other.outputs["sr16"], full.outputs["sr16"])


def test_truncation_stops_the_previous_chain_and_guidance_runs_per_stage(stages):
    y = torch.tensor([0, 1, 2, 0])
    trunc = [stages[0], Stage("sr8", stages[1].module, stages[1].sampler, ClassifierFreeGuidance(1.0), 0.3, "truncated"),
             stages[2]]
    check_stages(trunc)
    out = run_cascade(trunc, range(4), seed=5, labels=y)
    assert out.truncated == {"base4": True, "sr8": False, "sr16": False}
    # the truncated chain walks only the grid times above t_s = 0.3 · (T − 1) of its 4-step grid
    grid = stages[0].module.schedule.time_grid(4, "even")
    assert out.nfe["base4"] == sum(t > 0.3 * (T - 1) for t in grid) < 4
    assert out.outputs["sr16"].shape == (4, 1, 16, 16)


def test_stages_that_do_not_chain_are_refused_naming_the_key(stages):
    with pytest.raises(ConfigError, match="first stage"):
        check_stages(stages[1:])
    with pytest.raises(ConfigError, match="pipeline.stages.sr16 takes"):
        check_stages([stages[0], stages[2]])
    with pytest.raises(ConfigError, match="augmentation must be one of"):
        check_stages([stages[0], Stage("sr8", stages[1].module, stages[1].sampler, augmentation="partial")])


def test_the_pipeline_config_composes_for_sample_and_eval():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="diffzoo.conf", version_base="1.3"):
        for name in ("sample", "eval"):
            cfg = compose(config_name=name, overrides=["pipeline=cdm_fashion_mnist", "pipeline.stages.sr16.aug_level=0.1"])
            assert list(cfg.pipeline.stages) == ["base8", "sr16", "sr32"]
            assert cfg.pipeline.stages.sr16.aug_level == 0.1 and cfg.pipeline.stages.sr32.aug_level == 0.0
        assert compose(config_name="sample", overrides=["ckpt_path=x"]).get("pipeline") is None


def test_a_text_cascade_gives_every_text_stage_the_captions():
    from diffzoo.lit.text_super_resolution import TextSuperResolutionModule
    from tests.unit.test_text_unet import NET, TEXT, TinyFrozen, _module, _randomize

    base = _module(TinyFrozen(), mode="glide").eval()
    backbone = UNet(**{**NET, "in_channels": 2, "image_size": 16}, **TEXT["glide"])
    sr = TextSuperResolutionModule(
        net=_randomize(SuperResolutionNet(backbone, 1, 8)), schedule=base.schedule, objective=SimpleLoss(),
        sampler=SamplerSpec("ddpm", steps=3), optimizer=partial(torch.optim.Adam), ema_decay=None, text_encoder=TinyFrozen(),
        caption_drop_prob=0.1, augmentation=ConditioningAugmentation(GaussianNoiseAugmentation(sample_level=0.2))).eval()
    stages = [Stage("base8", base, SamplerSpec("ddpm", steps=3)), Stage("sr16", sr, sr.sampler, ClassifierFreeGuidance(1.0))]
    check_stages(stages)
    assert stages[1].takes_text() and not stages[1].takes_labels()
    one = run_cascade(stages, range(2), seed=0, captions=["a bold digit seven", "a thin digit one"])
    two = run_cascade(stages, range(2), seed=0, captions=["a digit one", "a digit one"])
    assert one.outputs["sr16"].shape == (2, 1, 16, 16)
    assert not torch.allclose(one.outputs["base8"], two.outputs["base8"])  # the base stage reads the captions
    assert not torch.allclose(one.outputs["sr16"], two.outputs["sr16"])


@pytest.mark.parametrize("name,stages", [("cdm_image_folder", ["base16", "sr64"]), ("imagen_fashion_mnist", ["base16", "sr32"])])
def test_every_pipeline_config_composes(name, stages):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="diffzoo.conf", version_base="1.3"):
        cfg = compose(config_name="sample", overrides=[f"pipeline={name}"])
    assert list(cfg.pipeline.stages) == stages and cfg.pipeline.name == name
