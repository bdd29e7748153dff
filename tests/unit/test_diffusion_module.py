"""DiffusionModule pieces that are not training: the denoiser contract, sampling, per-step seeds."""

import functools

import pytest
import torch

from diffzoo.lit import DiffusionModule
from diffzoo.networks import TimeMLP
from diffzoo.objectives import SimpleLoss
from diffzoo.samplers import ddpm
from diffzoo.schedules import DiscreteSchedule, linear_betas


def _module(**kw):
    return DiffusionModule(
        net=TimeMLP(dim=2, hidden=32, depth=2, time_embed_dim=16),
        schedule=DiscreteSchedule(linear_betas(50)),
        objective=SimpleLoss(),
        sampler=functools.partial(ddpm, clip_x0=False),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        data_shape=(2,),
        **kw,
    )


def test_sample_shapes_nfe_and_steps():
    m = _module()
    nfes = []
    x = m.sample(5, generator=torch.Generator().manual_seed(0), callback=lambda d: nfes.append(d["nfe"]))
    assert x.shape == (5, 2) and nfes[-1] == 50
    nfes.clear()
    m.sample(5, steps=10, callback=lambda d: nfes.append(d["nfe"]))
    assert nfes[-1] == 10


def test_same_generator_same_samples_and_ema_is_default():
    m = _module()
    a = m.sample(4, generator=torch.Generator().manual_seed(1))
    b = m.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(1.0)  # raw weights change, EMA copy does not
    c = m.sample(4, generator=torch.Generator().manual_seed(1))
    d = m.sample(4, generator=torch.Generator().manual_seed(1), use_ema=False)
    assert torch.equal(a, c) and not torch.equal(a, d)


def test_denoiser_passes_original_timesteps_as_float():
    m = _module()
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, t, y=None):
            seen["t"] = t
            return torch.zeros_like(x)

    m.ema.shadow = Spy()
    m.sample(2, steps=5)
    assert seen["t"].dtype == torch.float32 and seen["t"][0].item() == 0.0


def test_training_seed_depends_on_step_and_rank_only():
    m = _module(seed=7)
    m.on_train_batch_start(None, 0)
    a = torch.rand(3)
    torch.rand(10)  # anything drawn in between does not matter
    m.on_train_batch_start(None, 0)
    assert torch.equal(a, torch.rand(3))


def test_sample_needs_n_or_noise():
    with pytest.raises(ValueError, match="n or x_T"):
        _module().sample()
