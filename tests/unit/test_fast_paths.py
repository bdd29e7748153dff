"""The speed switches (config group ``perf``), mixed-precision numerics of the U-Net, the fused EMA
update, and the throughput callback. No timing is asserted anywhere (benchmarks/ measures)."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from diffzoo.callbacks import Throughput
from diffzoo.data.base import InMemoryDataset, collate_batch
from diffzoo.data.sampler import InfiniteBatchSampler
from diffzoo.errors import ConfigError
from diffzoo.lit import DiffusionModule
from diffzoo.lit.fast_paths import FastPaths, apply_fast_paths
from diffzoo.networks import UNet
from diffzoo.networks.mlp import TimeMLP
from diffzoo.networks.unet import GroupNorm32
from diffzoo.objectives import SimpleLoss
from diffzoo.optim.ema import EMA
from diffzoo.samplers import ddpm
from diffzoo.schedules import DiscreteSchedule, linear_betas


def _tiny_unet() -> UNet:
    return UNet(1, 1, 8, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), num_groups=8)


def _module(net=None, optimizer=torch.optim.Adam) -> DiffusionModule:
    torch.manual_seed(0)
    return DiffusionModule(net=net or _tiny_unet(), schedule=DiscreteSchedule(linear_betas(100)), objective=SimpleLoss(),
                           sampler=ddpm, optimizer=partial(optimizer, lr=1e-3), ema_decay=0.9)


def _loader(batch: int = 4):
    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    return DataLoader(InMemoryDataset(images), batch_sampler=InfiniteBatchSampler(32, batch, 0), collate_fn=collate_batch)


def _fit(module, steps: int = 2, **trainer_kw) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, use_distributed_sampler=False, **trainer_kw)
    trainer.fit(module, train_dataloaders=_loader())
    return trainer


def test_unknown_key_and_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="perf.channel_last"):
        FastPaths.from_config({"channel_last": True})
    with pytest.raises(ConfigError, match="perf.compile_mode='fastest'"):
        FastPaths.from_config({"compile_mode": "fastest"})
    with pytest.raises(ConfigError, match="perf.matmul_precision"):
        FastPaths.from_config({"matmul_precision": "tf32"})


def test_all_off_changes_nothing():
    module = _module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    paths = apply_fast_paths(module, None)
    assert paths == FastPaths() and module.fast_paths is paths
    assert not module.net.use_checkpoint
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_channels_last_converts_weights_and_training_batches():
    module = _module()
    apply_fast_paths(module, {"channels_last": True})
    conv = module.net.down[0][0].conv1.weight  # [16, 16, 3, 3]: the two layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert module.ema.shadow.down[0][0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    batch = module.on_after_batch_transfer({"x": torch.randn(2, 1, 8, 8), "y": torch.zeros(2)}, 0)
    assert batch["x"].is_contiguous(memory_format=torch.channels_last) and "y" in batch


def test_activation_checkpointing_needs_a_supporting_net():
    module = _module()
    apply_fast_paths(module, {"activation_checkpointing": True})
    assert module.net.use_checkpoint
    mlp_module = _module(net=TimeMLP(dim=2))
    with pytest.raises(ConfigError, match="perf.activation_checkpointing=true but TimeMLP"):
        apply_fast_paths(mlp_module, {"activation_checkpointing": True})


def test_fused_optimizer_only_where_a_fused_kernel_exists():
    assert FastPaths(fused_optimizer=True).optimizer_kwargs(partial(torch.optim.AdamW, lr=1)) == {"fused": True}
    assert FastPaths().optimizer_kwargs(partial(torch.optim.AdamW, lr=1)) == {}
    with pytest.raises(ConfigError, match="RMSprop has no fused kernel"):
        FastPaths(fused_optimizer=True).optimizer_kwargs(partial(torch.optim.RMSprop, lr=1))


def test_fused_adam_with_bf16_mixed_still_clips_gradients(monkeypatch):
    """Lightning refuses to clip a fused optimizer's gradients under mixed precision; the module
    clips them itself (the ``perf=gpu`` preset combines both with ``gradient_clip_val``)."""
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        calls.append(max_norm)
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    module = _module()
    apply_fast_paths(module, {"fused_optimizer": True})
    trainer = _fit(module, steps=2, precision="bf16-mixed", gradient_clip_val=0.5)
    assert trainer.global_step == 2
    assert calls == [0.5, 0.5]
    assert module.optimizers().optimizer.defaults["fused"] is True


def test_groupnorm32_normalises_in_float32_under_autocast():
    torch.manual_seed(0)
    norm = GroupNorm32(2, 4)
    x = (torch.randn(3, 4, 5, 5) * 100 + 50).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    assert out.dtype == torch.bfloat16
    ref = torch.nn.functional.group_norm(x.float(), 2, norm.weight, norm.bias, norm.eps)
    assert torch.allclose(out.float(), ref, atol=1e-2)  # only the final bf16 rounding
    assert norm(x.float()).dtype == torch.float32


def test_unet_time_embedding_stays_float32_under_autocast():
    net = _tiny_unet()
    seen = {}
    net.time_mlp.register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 1, 8, 8), torch.tensor([3.0, 997.0]))
    assert seen["dtype"] == torch.float32
    assert out.dtype == torch.bfloat16


def test_ema_update_is_the_polyak_formula():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, decay=0.75)
    old = [p.detach().clone() for p in ema.shadow.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    for s, o, p in zip(ema.shadow.parameters(), old, net.parameters()):
        assert torch.allclose(s, 0.75 * o + 0.25 * p)  # shadow ← d·shadow + (1 − d)·θ


def test_throughput_callback_logs_rate_step_and_data_wait():
    logged = []

    class _Capture(L.pytorch.loggers.logger.Logger):
        name, version, experiment = "capture", 0, None

        def log_metrics(self, metrics, step=None):
            logged.append(dict(metrics))

        def log_hyperparams(self, *args, **kwargs):
            pass

    module = _module()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=4, logger=_Capture(), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, use_distributed_sampler=False, callbacks=[Throughput(every_n_steps=2)])
    trainer.fit(module, train_dataloaders=_loader(batch=4))
    rows = [m for m in logged if "train/images_per_s" in m]
    assert len(rows) == 2
    for row in rows:
        assert row["train/images_per_s"] > 0 and row["train/step_ms"] > 0 and row["train/data_wait_ms"] >= 0
        total_s = (row["train/step_ms"] + row["train/data_wait_ms"]) / 1000
        assert row["train/images_per_s"] == pytest.approx(4 / total_s, rel=0.5)

