"""Latent diffusion (Rombach et al. 2022, §3) around the project's diffusion modules: latent scaling as
LDM's code (``scale_by_std`` from the first batch, VQ unscaled, a fixed factor), training on z, decoded
samples, exact checkpoints. First stages here are fixed average-pool / nearest-upsample pairs, so every
expected value is a closed form."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from diffzoo.errors import ConfigError
from diffzoo.lit.build import build_module, load_module
from diffzoo.lit.latent_diffusion import LatentDiffusionModule, latent_std_scale
from diffzoo.networks import UNet
from diffzoo.networks.first_stage import FirstStage, IdentityFirstStage
from diffzoo.objectives import SimpleLoss
from diffzoo.samplers import SamplerSpec, sample_indices
from diffzoo.schedules import DiscreteSchedule, sqrt_linear_betas

DIFFUSERS_VQ_SCALE = 0.18215  # diffusers VQModel / AutoencoderKL default scaling_factor


class PoolFirstStage(nn.Module):
    """A fixed first stage: ``E(x) = gain · f·avgpool_f(x)`` repeated over ``latent_channels`` (f·avgpool keeps
    the std of i.i.d. unit pixels: the mean of f² of them times f), ``D(z) = nearest-upsample(mean_c z / (gain·f))``.
    ``kind`` says how LDM treats it (kl: rescaled by 1/std, vq: not)."""

    def __init__(self, f: int = 4, latent_channels: int = 2, gain: float = 1.0, kind: str = "kl", channels: int = 1):
        super().__init__()
        self.downsampling_factor, self.latent_channels, self.kind, self.gain = f, latent_channels, kind, gain
        self.dummy = nn.Parameter(torch.zeros(()))  # a weight, so "frozen" and "not in the optimizer" mean something

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = F.avg_pool2d(x, self.downsampling_factor) * (self.gain * self.downsampling_factor) + self.dummy
        return z.mean(1, keepdim=True).repeat(1, self.latent_channels, 1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = z.mean(1, keepdim=True) / (self.gain * self.downsampling_factor)
        return F.interpolate(x, scale_factor=self.downsampling_factor, mode="nearest")


def _module(first_stage, data_shape=(1, 16, 16), latent_scaling="auto", scale_factor=None, **kw) -> LatentDiffusionModule:
    f, cz = first_stage.downsampling_factor, first_stage.latent_channels
    net = UNet(in_channels=cz, out_channels=cz, image_size=data_shape[1] // f, base_channels=16, channel_mult=(1, 2),
               num_res_blocks=1, attention_resolutions=(), num_groups=8, dropout=0.0)
    return LatentDiffusionModule(net, DiscreteSchedule(sqrt_linear_betas(1000)), SimpleLoss(), SamplerSpec("ddim", 4),
                                 lambda params: torch.optim.Adam(params, lr=1e-3), ema_decay=None, data_shape=data_shape,
                                 first_stage=first_stage, latent_scaling=latent_scaling, scale_factor=scale_factor, **kw)


def test_test_stages_meet_the_protocol():
    assert isinstance(PoolFirstStage(), FirstStage) and isinstance(IdentityFirstStage(1), FirstStage)


# ---------------------------------------------------------------------- scaling
def test_scale_by_std_closed_form_and_unit_latent_std():
    # x i.i.d. N(0, sigma^2): z = gain·f·avgpool_f(x) has std gain·sigma (mean of f² samples: std sigma/f), so
    # LDM's 1/std(z) is 1/(gain·sigma). The first batch holds n = 64·1·4·4 = 1024 i.i.d. latents: the relative
    # error of a sample std is ≈ 1/sqrt(2n) = 2.2 %; allow 5 of them.
    gain, sigma, n_first = 3.7, 0.5, 64
    module = _module(PoolFirstStage(gain=gain))
    assert module.latent_scaling == "std" and torch.isnan(module.scale_factor)
    gen = torch.Generator().manual_seed(0)
    first = sigma * torch.randn(n_first, 1, 16, 16, generator=gen)
    s = module.fit_scale(first).item()
    tol = 5 / math.sqrt(2 * n_first * 16)
    assert s == pytest.approx(1 / (gain * sigma), rel=tol)
    held_out = sigma * torch.randn(2000, 1, 16, 16, generator=gen)
    assert module.encode(held_out).std().item() == pytest.approx(1.0, rel=tol)  # the LDM's "unit variance" latents
    assert latent_std_scale(module.first_stage.encode(first)).item() == pytest.approx(s, rel=1e-6)


def test_scale_from_first_batch_gives_unit_std_on_digits():
    # Real data: s from the first training batch of digits; the std of s·E(x) over the whole training set is 1
    # up to the batch-to-batch spread of the estimate (measured on the data itself, 4 of its standard deviations).
    from diffzoo.data import DigitsDataModule

    dm = DigitsDataModule(batch_size=128, image_size=8)
    dm.setup("fit")
    x_all = dm.train_dataset_tensor()
    module = _module(PoolFirstStage(f=2, gain=2.5), data_shape=(1, 8, 8))
    batches = x_all[: (len(x_all) // 128) * 128].reshape(-1, 128, 1, 8, 8)
    s = module.fit_scale(batches[0]).item()
    spread = torch.stack([latent_std_scale(module.first_stage.encode(b)) for b in batches]).std().item() / s
    assert module.encode(x_all).std().item() == pytest.approx(1.0, abs=4 * spread + 1e-3)


def test_vq_latents_are_not_rescaled_and_the_diffusers_default_is_the_trap():
    # VQ latents near unit variance (LDM App. D.1): the LDM's code keeps them as they are (no scale_factor).
    module = _module(PoolFirstStage(gain=1.0, kind="vq"))
    assert module.latent_scaling == "none" and module.scale_factor.item() == 1.0
    x = torch.randn(256, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    z = module.encode(x)
    assert torch.equal(z, module.first_stage.encode(x))
    # x_T ~ N(0, I) matches these latents (std 1 ± 5/sqrt(2n)); treating them with diffusers' default
    # VQModel scaling_factor 0.18215 (diffusers #6725: LDMPipeline divides the sampled latents by it) feeds the
    # decoder latents 1/0.18215 = 5.49 times too large — what LDM's VQ models never saw.
    tol = 5 / math.sqrt(2 * z.numel())
    assert z.std().item() == pytest.approx(1.0, rel=tol)
    assert (z / DIFFUSERS_VQ_SCALE).std().item() == pytest.approx(1 / DIFFUSERS_VQ_SCALE, rel=tol)
    assert abs((z / DIFFUSERS_VQ_SCALE).std().item() - 1.0) > 4.0


def test_diffusers_vqmodel_default_scaling_factor():
    import inspect

    diffusers = pytest.importorskip("diffusers")
    # the default sits in the constructor's signature (read without building weights)
    assert inspect.signature(diffusers.VQModel.__init__).parameters["scaling_factor"].default == pytest.approx(DIFFUSERS_VQ_SCALE)


def test_fixed_scale_and_config_errors():
    module = _module(PoolFirstStage(), latent_scaling="fixed", scale_factor=0.18215)
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(module.encode(x), 0.18215 * module.first_stage.encode(x))
    with pytest.raises(ConfigError, match="model.latent_scaling"):
        _module(PoolFirstStage(), latent_scaling="sqrt")
    with pytest.raises(ConfigError, match="model.scale_factor"):
        _module(PoolFirstStage(), latent_scaling="fixed")
    with pytest.raises(ConfigError, match="model.scale_factor"):
        _module(PoolFirstStage(), latent_scaling="std", scale_factor=0.5)
    with pytest.raises(ConfigError, match="net.in_channels"):
        LatentDiffusionModule(UNet(in_channels=2, out_channels=2, image_size=4, base_channels=16, channel_mult=(1, 2),
                                   num_res_blocks=1, attention_resolutions=(), num_groups=8),
                              DiscreteSchedule(sqrt_linear_betas(10)), SimpleLoss(), SamplerSpec("ddim", 2),
                              lambda p: torch.optim.Adam(p), data_shape=(1, 16, 16), first_stage=PoolFirstStage(latent_channels=3))
    with pytest.raises(RuntimeError, match="not estimated"):
        _module(PoolFirstStage()).encode(x)


def test_net_must_fit_the_latents():
    stage = PoolFirstStage(f=4, latent_channels=2)
    net = UNet(in_channels=2, out_channels=2, image_size=16, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
               attention_resolutions=(), num_groups=8)
    with pytest.raises(ConfigError, match="net.image_size=16 .* set net.image_size=4"):
        LatentDiffusionModule(net, DiscreteSchedule(sqrt_linear_betas(10)), SimpleLoss(), SamplerSpec("ddim", 2),
                              lambda p: torch.optim.Adam(p), data_shape=(1, 16, 16), first_stage=stage)


# ---------------------------------------------------------------------- training and sampling
def test_first_batch_rule_training_on_z_and_frozen_first_stage():
    stage = PoolFirstStage(gain=3.0)
    module = _module(stage)
    seen = []
    hook = module.net.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    first = {"x": 0.5 * torch.randn(8, 1, 16, 16)}
    second = {"x": 0.05 * torch.randn(8, 1, 16, 16)}
    module.on_train_batch_start(first, 0)
    s = module.scale_factor.clone()
    assert s.item() == pytest.approx(latent_std_scale(stage.encode(first["x"])).item())
    loss = module.training_step(first, 0)
    module.on_train_batch_start(second, 1)  # later batches keep the first batch's factor
    assert torch.equal(module.scale_factor, s)
    hook.remove()
    assert seen == [(8, 2, 4, 4)]  # the network saw z [B, C_z, H/f, W/f]
    loss.backward()
    assert stage.dummy.grad is None and not stage.dummy.requires_grad
    trained = {id(p) for g in module.configure_optimizers().param_groups for p in g["params"]}
    assert id(stage.dummy) not in trained and trained == {id(p) for p in module.net.parameters()}
    module.train()
    assert module.training and not stage.training
    # a resumed module takes the stored buffer and does not re-estimate it
    fresh = _module(PoolFirstStage(gain=3.0))
    fresh.load_state_dict(module.state_dict())
    fresh.on_train_batch_start(second, 0)
    assert torch.equal(fresh.scale_factor, s)


def test_samples_are_decoded_into_data_space():
    stage = PoolFirstStage(f=4, gain=2.0)
    module = _module(stage, latent_scaling="fixed", scale_factor=0.5)
    gen = torch.Generator().manual_seed(0)
    x = module.sample(3, generator=gen)
    assert x.shape == (3, 1, 16, 16)
    # nearest-upsampled latents: every 4x4 block of a sample is constant
    blocks = x.unfold(2, 4, 4).unfold(3, 4, 4)
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    # the one sampling loop draws z_T in latent shape from the data shape it is given and decodes
    d = module.denoiser()
    assert d.model_shape == (2, 4, 4)
    batch = sample_indices(d, module.sampler, range(2), seed=0, shape=module.data_shape)
    assert batch.x.shape == (2, 1, 16, 16)
    z = torch.randn(2, 2, 4, 4)
    assert torch.allclose(d.to_data(z), stage.decode(z / 0.5))
    assert torch.allclose(d.from_data(batch.x), 0.5 * stage.encode(batch.x))


def test_identity_first_stage_is_pixel_space_diffusion():
    module = _module(IdentityFirstStage(1))
    assert module.latent_scaling == "none" and module.latent_shape == (1, 16, 16)
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(module.encode(x), x)


# ---------------------------------------------------------------------- checkpoints
def _cfg():
    return OmegaConf.create({
        "seed": 3,
        "model": {"_target_": "diffzoo.lit.latent_diffusion.LatentDiffusionModule", "conditional": False,
                  "latent_scaling": "auto", "scale_factor": None},
        "net": {"_target_": "diffzoo.networks.UNet", "in_channels": 2, "out_channels": 2, "image_size": 4,
                "base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
                "num_groups": 8, "dropout": 0.0},
        "schedule": {"_target_": "diffzoo.schedules.DiscreteSchedule",
                     "betas": {"_target_": "diffzoo.schedules.sqrt_linear_betas", "T": 1000}},
        "objective": {"_target_": "diffzoo.objectives.SimpleLoss"},
        "sampler": {"_target_": "diffzoo.samplers.SamplerSpec", "name": "ddim", "steps": 5},
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        "lr_scheduler": None,
        "ema": {"decay": 0.9, "warmup": False},
        "first_stage": {"_target_": "tests.unit.test_latent_diffusion.PoolFirstStage", "f": 4, "latent_channels": 2,
                        "gain": 4.0, "kind": "kl"},
    })


def test_checkpoint_rebuilt_from_its_config_samples_identically(tmp_path):
    torch.manual_seed(0)
    module = build_module(_cfg(), (1, 16, 16))
    data = [{"x": 0.3 * torch.randn(1, 16, 16)} for _ in range(16)]
    loader = DataLoader(data, batch_size=4)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, loader)
    assert torch.isfinite(module.scale_factor) and module.scale_factor.item() != 1.0
    path = tmp_path / "ldm.ckpt"
    trainer.save_checkpoint(path)
    rebuilt = load_module(path)
    assert torch.equal(rebuilt.scale_factor, module.scale_factor)
    # the frozen first stage is saved once (not in the EMA), and its weights came back
    assert [k for k in rebuilt.state_dict() if "first_stage" in k] == ["first_stage.dummy"]
    module.eval()
    a = module.sample(4, generator=torch.Generator().manual_seed(5))
    b = rebuilt.sample(4, generator=torch.Generator().manual_seed(5))
    assert a.shape == (4, 1, 16, 16) and torch.equal(a, b)


def test_checkpoint_stores_the_first_stage_architecture_inline(tmp_path):
    # a first stage built by first_stage_from (here untrained; from an ae_* checkpoint alike) is stored as its
    # architecture config: the LDM checkpoint, which holds its weights, rebuilds without the autoencoder's file
    cfg = _cfg()
    arch = dict(cfg.first_stage)
    cfg.first_stage = {"_target_": "diffzoo.lit.first_stage_loading.first_stage_from", "_recursive_": False,
                       "ckpt_path": None, "untrained_ok": True, "architecture": arch}
    module = build_module(cfg, (1, 16, 16))
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader([{"x": torch.randn(1, 16, 16)} for _ in range(4)], batch_size=4))
    path = tmp_path / "ldm.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, weights_only=False)["diffzoo"]["config"]["first_stage"]
    assert stored == arch
    with torch.no_grad():
        module.first_stage.dummy.fill_(0.25)  # weights that only the checkpoint knows
    trainer.save_checkpoint(path)
    rebuilt = load_module(path)
    assert rebuilt.first_stage.dummy.item() == 0.25


def _fit(module, tmp_path, max_steps, ckpt_path=None):
    # every batch holds the same four images: a resumed epoch re-reading batches from its start sees the same data
    data = [{"x": torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(i % 4))} for i in range(32)]
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(data, batch_size=4), ckpt_path=ckpt_path)
    return trainer


def test_resume_is_exact_and_keeps_the_first_batch_scale(tmp_path):
    torch.manual_seed(0)  # the same initial weights (diffzoo-train seeds before building)
    straight = build_module(_cfg(), (1, 16, 16))
    _fit(straight, tmp_path / "a", 4)
    torch.manual_seed(0)
    first = build_module(_cfg(), (1, 16, 16))
    trainer = _fit(first, tmp_path / "b", 2)
    trainer.save_checkpoint(tmp_path / "half.ckpt")
    resumed = build_module(_cfg(), (1, 16, 16))
    _fit(resumed, tmp_path / "c", 4, ckpt_path=tmp_path / "half.ckpt")
    assert torch.equal(resumed.scale_factor, straight.scale_factor)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_diffzoo_sample_writes_decoded_images(tmp_path):
    import numpy as np

    from diffzoo.config import compose_config
    from diffzoo.sample import sample

    module = build_module(_cfg(), (1, 16, 16))
    trainer = _fit(module, tmp_path, 1)
    trainer.save_checkpoint(tmp_path / "ldm.ckpt")
    cfg = compose_config("sample", [f"ckpt_path={tmp_path / 'ldm.ckpt'}", "n=3", "sampler.steps=2", f"out={tmp_path / 's'}",
                                    "device=cpu"])
    sample(cfg)
    images = np.load(tmp_path / "s" / "samples.npz")["images"]  # uint8 [n, H, W, C]
    assert images.shape == (3, 16, 16, 1)
    blocks = torch.from_numpy(images[..., 0]).unfold(1, 4, 4).unfold(2, 4, 4)  # D = nearest ×4 upsampling
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))


def test_classifier_free_guidance_on_a_class_conditional_latent_model():
    from diffzoo.guidance import ClassifierFreeGuidance
    from diffzoo.networks.spatial_transformer import LDMUNet, SpatialTransformer

    torch.manual_seed(0)
    stage = PoolFirstStage(f=4, latent_channels=2)
    net = LDMUNet(in_channels=2, out_channels=2, image_size=4, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                  attention_resolutions=(2,), num_head_channels=8, num_groups=8, dropout=0.0, context_dim=8, num_classes=3)
    for m in [*net.modules()]:  # weights away from their zero init, so labels and guidance change the output
        if isinstance(m, SpatialTransformer):
            torch.nn.init.normal_(m.proj_out.weight, std=0.2)
    torch.nn.init.normal_(net.out[-1].weight, std=0.2)
    module = LatentDiffusionModule(net, DiscreteSchedule(sqrt_linear_betas(1000)), SimpleLoss(), SamplerSpec("ddim", 3),
                                   lambda p: torch.optim.Adam(p), ema_decay=None, data_shape=(1, 16, 16), first_stage=stage,
                                   latent_scaling="fixed", scale_factor=0.5, conditional=True, cond_drop_prob=0.1)
    d = module.denoiser()
    assert d.null_cond == {"y": 3}
    labels = torch.tensor([0, 2])
    plain = sample_indices(d, module.sampler, range(2), seed=0, shape=module.data_shape, labels=labels)
    guided = sample_indices(d, module.sampler, range(2), seed=0, shape=module.data_shape, labels=labels,
                            guidance=ClassifierFreeGuidance(scale=3.0))
    same = sample_indices(d, module.sampler, range(2), seed=0, shape=module.data_shape, labels=labels,
                          guidance=ClassifierFreeGuidance(scale=0.0))  # w = 0: the conditional model itself
    assert guided.x.shape == plain.x.shape == (2, 1, 16, 16)
    assert torch.allclose(same.x, plain.x, atol=1e-5) and not torch.allclose(guided.x, plain.x, atol=1e-3)


def test_any_objective_and_sampler_edm_on_latents():
    # the wrapper is not tied to DDPM: EDM's process, loss, preconditioning and Heun sampler run on z as well
    from diffzoo.lit.latent_diffusion import LatentEDMModule
    from diffzoo.objectives import EDMLoss
    from diffzoo.schedules import EDMProcess

    torch.manual_seed(0)
    stage = PoolFirstStage(f=4, gain=2.0)
    net = UNet(in_channels=2, out_channels=2, image_size=4, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
               attention_resolutions=(), num_groups=8, dropout=0.0)
    module = LatentEDMModule(net, EDMProcess(), EDMLoss(), SamplerSpec("edm_heun", 4), lambda p: torch.optim.Adam(p),
                             ema_decay=None, data_shape=(1, 16, 16), sigma_data=1.0, first_stage=stage)
    seen = []
    module.net.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    batch = {"x": 0.5 * torch.randn(4, 1, 16, 16)}
    module.on_train_batch_start(batch, 0)
    assert module.scale_factor.item() == pytest.approx(latent_std_scale(stage.encode(batch["x"])).item())
    assert torch.isfinite(module.training_step(batch, 0)) and seen[-1] == (4, 2, 4, 4)
    x = module.sample(2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 16, 16) and seen[-1][1:] == (2, 4, 4)


class NoisyPoolFirstStage(PoolFirstStage):
    """A posterior-sampling first stage (LDM's KL encode draws z ~ q(z|x)): it consumes the global RNG."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = super().encode(x)
        return z + 0.1 * torch.randn_like(z)


def test_the_scale_estimate_leaves_the_training_noise_as_it_was():
    module = _module(NoisyPoolFirstStage(gain=2.0))
    module.on_train_batch_start({"x": torch.randn(4, 1, 16, 16)}, 0)
    after = torch.get_rng_state()
    torch.manual_seed(module.step_seed("train"))  # what DiffzooModule.on_train_batch_start seeds
    assert torch.equal(after, torch.get_rng_state()) and not torch.isnan(module.scale_factor)
