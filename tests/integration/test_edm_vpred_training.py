"""``edm_digits`` and ``vpred_digits`` learn: a few hundred CPU steps of the real experiment configs
(EDM's preconditioned x̂₀ model; a v-predicting DDPM) train without NaN and their samples move from noise
to digits — measured by the RMS distance of each sample to its nearest training digit, which must close at
least half the gap between the untrained model's samples and held-out real digits."""

import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from diffzoo.lit.build import build_module
from tests.helpers import compose_train

STEPS = 300
N_SAMPLES = 256


def nn_rms(samples: torch.Tensor, train: torch.Tensor) -> float:
    """Mean over samples of the RMS pixel distance to the nearest training image ([-1, 1] scale)."""
    d = torch.cdist(samples.flatten(1).double(), train.flatten(1).double())
    return float(d.min(dim=1).values.mean() / math.sqrt(samples[0].numel()))


def draw(module, sampler) -> torch.Tensor:
    return module.sample(N_SAMPLES, sampler=sampler, use_ema=False, generator=torch.Generator().manual_seed(1))


@pytest.mark.slow
@pytest.mark.parametrize("experiment, sampler", [
    ("edm_digits", None),                             # its configured sampler: EDM's Heun, 35 NFE on the ρ-grid
    ("vpred_digits", {"name": "ddim", "steps": 50}),  # the v-model read through its denoiser
])
def test_trains_and_samples_are_not_noise(experiment, sampler, tmp_path):
    torch.set_num_threads(1)
    cfg = compose_train([f"experiment={experiment}", "logger=csv", f"trainer.max_steps={STEPS}"], tmp_path)
    data = instantiate(cfg.data)
    data.setup("fit")
    module = build_module(cfg, data.data_shape)
    train_x = torch.stack([data.train_set[i]["x"] for i in range(len(data.train_set))])
    held_out = torch.stack([data.val_set[i]["x"] for i in range(len(data.val_set))])
    before = nn_rms(draw(module, sampler), train_x)
    trainer = L.Trainer(max_steps=STEPS, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    assert all(torch.isfinite(p).all() for p in module.net.parameters())
    samples = draw(module, sampler)
    assert torch.isfinite(samples).all()
    after, real = nn_rms(samples, train_x), nn_rms(held_out, train_x)
    print(f"{experiment}: NN-RMS untrained {before:.3f}, after {STEPS} steps {after:.3f}, held-out real {real:.3f}")
    assert after < real + 0.5 * (before - real), (before, after, real)
