"""Reflow (Liu et al. 2022, §2.2, Algorithm 1): pairs drawn through the one sampling loop depend on
(seed, i) only and are the sampler's ODE end points; the flow module switches to them at
``reflow_at``, keeps them in its checkpoints and trains on them; the pairs file round-trips."""

import torch

from diffzoo.denoisers import Denoiser
from diffzoo.lit.build import load_module
from diffzoo.lit.flow import write_reflow_pairs
from diffzoo.samplers import SamplerSpec
from diffzoo.samplers.reflow import draw_pairs, load_pairs, save_pairs
from diffzoo.schedules import RectifiedFlow
from diffzoo.utils.random import per_sample_generators
from tests.helpers import train_tiny

RF = RectifiedFlow(time_scale=1.0)


def linear_flow():
    """A flow model with u(x, t) = x (any deterministic velocity will do here)."""
    return Denoiser(lambda x, tau: x, RF, "flow", model_time=lambda t: t)


def test_pairs_depend_on_seed_and_index_only():
    spec = SamplerSpec("flow_euler", 3)
    a = draw_pairs(linear_flow(), spec, 10, seed=7, shape=(2,), batch_size=3)
    b = draw_pairs(linear_flow(), spec, 10, seed=7, shape=(2,), batch_size=10)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.x0, b.x0)
    # the noise is the prior draw of sample i; the end point is the sampler's output from it
    x1 = RF.prior_sample((10, 2), per_sample_generators(7, range(10), stream="x_T"))
    assert torch.equal(a.noise, x1)
    # Euler on dx/dt = x from t = 1 to 0 in 3 equal steps multiplies by (1 − 1/3)³
    torch.testing.assert_close(a.x0, x1 * (2 / 3) ** 3)
    c = draw_pairs(linear_flow(), spec, 10, seed=8, shape=(2,), batch_size=10)
    assert not torch.equal(a.noise, c.noise)


def test_pairs_file_round_trip(tmp_path):
    pairs = draw_pairs(linear_flow(), SamplerSpec("flow_euler", 2), 5, seed=0, shape=(2,))
    back = load_pairs(save_pairs(tmp_path / "p.pt", pairs, seed=0))
    assert torch.equal(back.noise, pairs.noise) and torch.equal(back.x0, pairs.x0)


def test_module_switches_to_reflow_and_keeps_the_pairs(tmp_path):
    """rf_toy2d with reflow at step 2 of 4: the checkpoint holds the pairs, which are the teacher's
    Euler end points (the teacher is stage one's EMA, re-trained here to step 2 with the same seed)."""
    overrides = ["model.reflow_at=2", "model.reflow_pairs=32", "model.reflow_batch_size=16",
                 "+model.reflow_sampler.steps=4", "model.reflow_sampler.name=flow_euler", "~model.reflow_sampler.rtol",
                 "~model.reflow_sampler.atol", "trainer.max_steps=4", "data.batch_size=64"]
    ckpt = train_tiny("rf_toy2d", tmp_path / "reflow", *overrides)
    module = load_module(ckpt)
    assert module.reflowing and module.reflow_x0.shape == (32, 2)
    teacher = load_module(train_tiny("rf_toy2d", tmp_path / "teacher", "trainer.max_steps=2", "data.batch_size=64"))
    from diffzoo.utils.random import derive_seed

    expected = draw_pairs(teacher.denoiser(), SamplerSpec("flow_euler", 4), 32, derive_seed(0, "reflow"), (2,))
    torch.testing.assert_close(module.reflow_noise, expected.noise)
    torch.testing.assert_close(module.reflow_x0, expected.x0, rtol=1e-5, atol=1e-5)
    # stage two trained on the pairs: the weights moved away from the teacher's EMA
    moved = any(not torch.equal(a, b) for a, b in zip(module.net.state_dict().values(),
                                                       teacher.ema.shadow.state_dict().values()))
    assert moved
    # and a pairs file of any flow checkpoint
    path = write_reflow_pairs(ckpt, tmp_path / "pairs.pt", 6, seed=3, sampler={"name": "flow_euler", "steps": 2})
    assert load_pairs(path).x0.shape == (6, 2)


def test_pairs_data_module_feeds_the_coupled_noise(tmp_path):
    """A pairs file as data: batches carry each sample's own noise, and the flow module's loss uses it
    (on the straight coupling x = 0.5 ε of an exact velocity u = ε − x = x the loss is zero)."""
    from diffzoo.data.reflow import ReflowPairsDataModule
    from diffzoo.lit.flow import FlowModule
    from diffzoo.objectives import FlowMatchingLoss

    noise = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    path = save_pairs(tmp_path / "p.pt", draw_pairs(linear_flow(), SamplerSpec("flow_euler", 1), 40, 0, (2,)))
    pairs = load_pairs(path)
    torch.testing.assert_close(pairs.x0, 0 * pairs.noise)  # one Euler step of u = x from t = 1: x − x = 0
    save_pairs(path, pairs._replace(x0=0.5 * noise, noise=noise))
    dm = ReflowPairsDataModule(str(path), n_val=8, batch_size=16)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    torch.testing.assert_close(batch["x"], 0.5 * batch["noise"])
    # x_t = (1 − t)·0.5ε + tε = (0.5 + 0.5t)ε and u = ε − 0.5ε = 0.5ε = x_t·0.5/(0.5 + 0.5t)
    net = type("Exact", (torch.nn.Module,), {"forward": lambda self, x, tau: x * 0.5 / (0.5 + 0.5 * tau[:, None])})()
    module = FlowModule(net, RF, FlowMatchingLoss(), SamplerSpec("flow_euler", 2), torch.optim.Adam, ema_decay=None,
                        data_shape=(2,))
    module.log = lambda *a, **k: None
    assert float(module.training_step(batch, 0)) < 1e-10
    assert float(module.training_step({"x": batch["x"]}, 0)) > 1e-3  # fresh noise: not the coupling


def test_reflow_digits_reaches_stage_two(tmp_path):
    """The experiment's second stage on images: pairs [n, 1, 8, 8] drawn, then trained on (a tiny budget)."""
    ckpt = train_tiny("reflow_digits", tmp_path / "run", "model.reflow_at=1", "model.reflow_pairs=4",
                      "model.reflow_sampler.rtol=0.1", "model.reflow_sampler.atol=0.1", "trainer.max_steps=2",
                      "data.batch_size=4")
    module = load_module(ckpt)
    assert module.reflowing and module.reflow_x0.shape == (4, 1, 8, 8)
    assert torch.isfinite(module.reflow_x0).all() and module.reflow_x0.abs().sum() > 0
