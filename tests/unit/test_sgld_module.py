"""SGLDPosterior (Welling & Teh 2011 §5.1 as a LightningModule) and its data module: the module's
loss is the potential U with the N/n scaling, each Lightning step is exactly one SGLD update per
chain, the kept draws are checkpointed, and a resumed chain continues bit for bit."""

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from diffzoo.data.sgld_mixture import ChainBatchSampler, SGLDMixtureDataModule
from diffzoo.errors import ConfigError
from diffzoo.lit.sgld import SGLDPosterior
from diffzoo.optim import PolynomialDecay
from diffzoo.toys.sgld_mixture import MixturePosterior
from diffzoo.utils.random import derive_seed

CHAINS, STEPS, SEED = 3, 6, 5


def make_module(**kw) -> SGLDPosterior:
    args = dict(num_chains=CHAINS, num_steps=STEPS, burn_in=0.0, thin=1, seed=SEED)
    return SGLDPosterior(**{**args, **kw})


def make_data(**kw) -> SGLDMixtureDataModule:
    return SGLDMixtureDataModule(**{"num_chains": CHAINS, "batch_size": 1, "seed": SEED, **kw})


def make_trainer(tmp_path, max_steps=STEPS, callbacks=(), **kw) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps, logger=False, enable_checkpointing=bool(callbacks), callbacks=list(callbacks),
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
        default_root_dir=str(tmp_path), accelerator="cpu", num_sanity_val_steps=0, limit_val_batches=0, **kw,
    )


# ------------------------------------------------------------------ data
def test_every_chain_sweeps_the_data_in_its_own_order():
    N, n, C = 10, 2, 4
    s = ChainBatchSampler(N, n, C, seed=1)
    epoch = torch.cat([s.batch(b) for b in range(N // n)], dim=1)  # [C, N]: one sweep per chain
    for row in epoch:
        assert sorted(row.tolist()) == list(range(N))
    assert len({tuple(row.tolist()) for row in epoch}) == C  # the chains read different orders
    resumed = iter(ChainBatchSampler(N, n, C, seed=1, start_batch=7))
    assert next(resumed) == s.batch(7).flatten().tolist()  # a function of (seed, batch number)


def test_data_module_serves_chain_major_float64_batches():
    dm = make_data(num_data=20, batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (CHAINS * 2, 1) and batch["x"].dtype == torch.float64
    obs = dm.observations()
    expected = obs[ChainBatchSampler(20, 2, CHAINS, SEED).batch(0)].reshape(-1, 1)
    torch.testing.assert_close(batch["x"], expected)


# ------------------------------------------------------------------ the loss
def test_potential_gradient_is_the_minibatch_estimate_of_eq4():
    """∇_θc Σ_c U_c = −(∇log p(θ_c) + (N/n) Σ_{i∈B_c} ∇log p(x_i|θ_c)), the closed form of the toy."""
    module = make_module()
    post = MixturePosterior(make_data().observations())
    module.posterior = post
    idx = torch.tensor([[0, 5], [17, 17], [99, 3]])
    theta = torch.tensor([[0.1, 0.9], [1.2, -1.1], [-0.4, 0.3]], dtype=torch.float64, requires_grad=True)
    module.potential(theta, post.x[idx]).sum().backward()
    torch.testing.assert_close(theta.grad, -post.grad_log_posterior(theta.detach(), idx))


# ------------------------------------------------------------------ the chain through Lightning
def replay(seed=SEED, steps=STEPS) -> list[torch.Tensor]:
    """W&T eq. 4 by hand with the module's seeds: θ ← θ + (ε_t/2) ĝ(θ) + √ε_t z."""
    dm = make_data(seed=seed)
    post = MixturePosterior(dm.observations())
    order = ChainBatchSampler(post.num_data, 1, CHAINS, seed)
    eps = PolynomialDecay.from_endpoints(0.01, 1e-4, steps, 0.55)
    theta = make_module(seed=seed).theta.detach().clone()
    states = []
    for t in range(steps):
        torch.manual_seed(derive_seed(seed, "train", 0, t))
        z = torch.randn(CHAINS, 2, dtype=torch.float64)
        theta = theta + 0.5 * eps(t) * post.grad_log_posterior(theta, order.batch(t)) + math.sqrt(eps(t)) * z
        states.append(theta)
    return states


def test_each_lightning_step_is_one_sgld_update_per_chain(tmp_path):
    module = make_module()
    make_trainer(tmp_path).fit(module, datamodule=make_data())
    states = replay()
    assert int(module.num_kept) == STEPS
    torch.testing.assert_close(module.samples, torch.stack(states), rtol=1e-10, atol=1e-12)
    eps = PolynomialDecay.from_endpoints(0.01, 1e-4, STEPS, 0.55)
    expected_eps = torch.tensor([eps(t) for t in range(STEPS)], dtype=torch.float64)
    torch.testing.assert_close(module.sample_step_sizes, expected_eps)
    torch.testing.assert_close(module.theta.detach(), states[-1], rtol=1e-10, atol=1e-12)
    assert "tv_distance" in module.trainer.callback_metrics
    assert (tmp_path / "sgld_posterior.png").is_file()


def test_burn_in_and_thinning_keep_the_right_steps(tmp_path):
    module = make_module(burn_in=0.5, thin=2)  # steps 3 and 5 of 0..5
    make_trainer(tmp_path).fit(module, datamodule=make_data())
    states = replay()
    assert module.samples.shape == (2, CHAINS, 2) and int(module.num_kept) == 2
    torch.testing.assert_close(module.samples, torch.stack([states[3], states[5]]), rtol=1e-10, atol=1e-12)
    draws = module.sample(4, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (4, 2)
    kept = module.samples.reshape(-1, 2).float()
    assert all(bool((kept == d).all(-1).any()) for d in draws)  # every draw is a kept chain state


def test_chain_buffer_is_checkpointed_and_resume_is_exact(tmp_path):
    straight = make_module()
    make_trainer(tmp_path / "a").fit(straight, datamodule=make_data())

    ckpt = ModelCheckpoint(dirpath=tmp_path / "b", every_n_train_steps=3, filename="half")
    make_trainer(tmp_path / "b", max_steps=3, callbacks=[ckpt]).fit(make_module(), datamodule=make_data())
    path = tmp_path / "b" / "half.ckpt"
    state = torch.load(path, weights_only=True)["state_dict"]
    assert int(state["num_kept"]) == 3 and state["samples"].shape == (STEPS, CHAINS, 2)
    torch.testing.assert_close(state["samples"][:3], straight.samples[:3])

    resumed = make_module()
    make_trainer(tmp_path / "c").fit(resumed, datamodule=make_data(), ckpt_path=str(path))
    assert torch.equal(resumed.samples, straight.samples)
    assert torch.equal(resumed.theta.detach(), straight.theta.detach())


def test_gradient_clipping_and_mismatched_chains_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="gradient_clip_val"):
        make_trainer(tmp_path, gradient_clip_val=1.0).fit(make_module(), datamodule=make_data())
    with pytest.raises(ConfigError, match="num_chains"):
        make_trainer(tmp_path).fit(make_module(), datamodule=make_data(num_chains=CHAINS + 1))
    with pytest.raises(ConfigError, match="burn_in"):
        make_module(burn_in=1.0)
