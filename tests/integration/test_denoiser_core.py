"""The denoiser core end to end, on checkpoints: earlier checkpoints sample as they did, every sampler
runs on every model its maths allows (through ``diffzoo-sample sampler=…``), every model family's
default sampler gives the same samples whatever the batch size, and gradient accumulation draws
fresh noise for every micro-batch."""

from pathlib import Path

import numpy as np
import pytest
import torch

from diffzoo.config import compose_config
from diffzoo.lit.build import load_module
from diffzoo.sample import sample

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
FAMILIES = ["ddpm_digits", "iddpm_digits", "ddim_digits", "cfg_digits", "sde_vp_digits", "sde_ve_digits", "ncsn_digits"]


def _draw_as_the_fixture_did(module, options: dict) -> torch.Tensor:
    """What ``make_legacy_fixtures.draw`` did with the code of 49f9711, through today's module API."""
    from diffzoo.guidance import ClassifierFreeGuidance
    from diffzoo.utils.random import per_sample_generators

    n, seed = 4, 0
    x_T = module.prior_sample(n, per_sample_generators(seed, range(n), stream="x_T"))
    kwargs = {"steps": options.get("steps")}
    if "y" in options:
        kwargs["y"] = torch.full((n,), options["y"], dtype=torch.long)
    if "cfg" in options:
        kwargs["guidance"] = ClassifierFreeGuidance(scale=options["cfg"])
    return module.sample(x_T=x_T, generator=per_sample_generators(seed, range(n), stream="steps"), **kwargs)


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoints_of_the_previous_code_load_and_sample_as_they_did(name):
    """Tiny checkpoints written, and sampled, by the code before the denoiser core (49f9711; the
    fixtures' README). Every stored sampler config loads; the samples agree bit for bit, except DDIM's,
    which forms x̂₀ as x/α − (σ/α) ε now and (x − σ ε)/α before: float32 rounding (relative 1e-6 of
    the samples' scale — an untrained net's DDIM samples reach 190)."""
    module = load_module(LEGACY / f"{name}.ckpt")
    recorded = torch.load(LEGACY / f"{name}_samples.pt", weights_only=True)
    for options, old in zip(recorded["options"], recorded["samples"]):
        new = _draw_as_the_fixture_did(module, options)
        if name == "ddim_digits":
            torch.testing.assert_close(new, old, rtol=0, atol=1e-6 * float(old.abs().max()))
        else:
            assert torch.equal(new, old), (name, options)


def _sample(ckpt, out, *overrides):
    return sample(compose_config("sample", [f"ckpt_path={ckpt}", f"out={out}", "device=cpu", "n=6", *overrides]))


@pytest.mark.parametrize("name, samplers", [
    ("ddpm_digits", [("sampler=ddpm", "sampler.steps=10"), ("sampler=ddim", "sampler.steps=10"), ("sampler=pc", "sampler.steps=10"),
                     ("sampler=ode", "sampler.rtol=1e-3", "sampler.atol=1e-3")]),
    ("sde_vp_digits", [("sampler=ddim", "sampler.steps=10"), ("sampler=pc", "sampler.steps=10"),
                       ("sampler=ode", "sampler.rtol=1e-3", "sampler.atol=1e-3"), ("sampler=ddpm", "sampler.steps=10")]),
])
def test_one_checkpoint_samples_with_every_sampler_its_process_allows(tmp_path, name, samplers):
    """A DDPM checkpoint with PC and the probability-flow ODE (through the VP SDE of its linear β table,
    Score SDE App. B), a Score SDE checkpoint with DDIM and ancestral sampling (the posterior of its
    Gaussian marginals): ``diffzoo-sample sampler=…`` on the very same checkpoint."""
    ckpt = LEGACY / f"{name}.ckpt"
    for overrides in samplers:
        out = tmp_path / overrides[0].split("=")[1]
        summary = _sample(ckpt, out, *overrides)
        images = np.load(out / "samples.npz")["images"]
        assert images.shape == (6, 8, 8, 1) and (out / "grid.png").is_file()
        assert summary["sampler"] == overrides[0].split("=")[1]
        assert summary["nfe"] == 10 or overrides[0] == "sampler=ode" and summary["nfe"] > 10


def test_the_console_script_takes_another_sampler(tmp_path):
    from tests.helpers import run_cli

    proc = run_cli("diffzoo.sample", [f"ckpt_path={LEGACY / 'ddpm_digits.ckpt'}", "n=2", "sampler=pc", "sampler.steps=6",
                                      f"out={tmp_path / 's'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sampler: pc" in proc.stdout and "nfe: 6" in proc.stdout


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_s_default_sampler_is_batch_size_invariant(tmp_path, name):
    """``diffzoo-sample n=6 batch_size=6`` and ``batch_size=4`` give identical samples with each model
    family's default sampler (PC included: its corrector norms are per sample by default)."""
    extra = ["guidance=cfg", "guidance.scale=2"] if name == "cfg_digits" else []
    steps = [] if name == "ncsn_digits" else ["sampler.steps=12"]
    a = _sample(LEGACY / f"{name}.ckpt", tmp_path / "a", "batch_size=6", *steps, *extra)
    _sample(LEGACY / f"{name}.ckpt", tmp_path / "b", "batch_size=4", *steps, *extra)
    assert a["sampler"] == load_module(LEGACY / f"{name}.ckpt").sampler.name
    npz_a, npz_b = np.load(tmp_path / "a" / "samples.npz"), np.load(tmp_path / "b" / "samples.npz")
    assert np.array_equal(npz_a["images"], npz_b["images"]), name


def test_gradient_accumulation_draws_fresh_noise_for_every_micro_batch(tmp_path):
    """Review A3: with ``accumulate_grad_batches=2`` both micro-batches of an optimizer step drew the
    same t, ε and label-drop mask (the seed did not advance inside the window). Recorded through a
    real ``train()``: the t of the micro-batches differ, and a resumed run still draws what an
    uninterrupted one does (the micro-batch index is part of the seed, not a counter)."""
    from tests.helpers import TINY, compose_train
    from diffzoo.train import train

    log = tmp_path / "t.txt"
    overrides = [*TINY, "experiment=cfg_digits", "net.base_channels=8", "net.channel_mult=[1,2]", "net.num_groups=4",
                 "trainer.max_steps=2", "+trainer.accumulate_grad_batches=2", "data.batch_size=32",
                 "objective._target_=tests.helpers.RecordingSimpleLoss", f"+objective.path={log}"]
    train(compose_train(overrides, run_dir=tmp_path / "run"))
    draws = [line.split(" | ") for line in log.read_text().splitlines()]
    assert len(draws) == 4  # 2 optimizer steps × 2 micro-batches
    t, drop = [d[0] for d in draws], [d[1] for d in draws]
    assert t[0] != t[1] and t[2] != t[3] and t[0] != t[2]  # noise levels (and with them ε) per micro-batch
    assert drop[0] != drop[1] and "1" in drop[0]  # CFG's label dropout too (p_uncond = 0.2)
