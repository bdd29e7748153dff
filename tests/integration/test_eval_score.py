"""Evaluation of score models: ``diffzoo-eval`` and the ``Evaluation`` callback on ScoreModule
checkpoints (SDE with PC / ODE, σ ladder with annealed Langevin), NFE in every record, and the
likelihood metrics (``nll_ode`` for SDE models, ``nll_vlb`` for discrete-time ones)."""

import json
import math

import lightning as L
import pytest
import torch

from diffzoo.callbacks.evaluation import Evaluation
from diffzoo.config import CONFIG_DIR, compose_config
from diffzoo.data import DigitsDataModule
from diffzoo.errors import ConfigError
from diffzoo.evaluate import evaluate
from diffzoo.lit.build import load_module
from diffzoo.metrics.distributed import draw_samples
from tests.integration.score_ckpt import TINY_UNET, write_score_checkpoint
from tests.integration.test_eval_cli import write_tiny_checkpoint

N = 10


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "diffzoo-metrics-cache"


def _eval(ckpt, out, cache, *extra):
    cfg = compose_config(config_name="eval", overrides=[
        f"ckpt_path={ckpt}", f"n={N}", "batch_size=4", "accelerator=cpu", "progress=false", "classifier.epochs=2", "kid.subsets=5",
        f"out={out}", f"paths.cache_dir={cache}", *extra])
    return evaluate(cfg)


@pytest.mark.parametrize("experiment, extra, nfe", [
    ("sde_vp_digits", ["sampler.steps=3"], 3),                                   # Euler-Maruyama, no corrector: N = 3
    ("sde_ve_digits", ["sampler.steps=6"], 6),                                   # reverse diffusion + 1 Langevin step: N = 3
    ("ncsnv2_digits", ["sampler.steps=4"], 4 + 1),                               # Langevin budget + final denoising
])
def test_eval_cli_on_score_models(tmp_path, shared_cache, experiment, extra, nfe):
    overrides = TINY_UNET if experiment.startswith("sde") else ["net.ngf=8"]
    ckpt = write_score_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", experiment, overrides)
    summary = _eval(ckpt, tmp_path / "out", shared_cache, "metrics=[fid,kid]", *extra)
    assert summary["nfe"] == nfe and math.isfinite(summary[f"fid_digits{N}"])
    assert all(r["nfe"] == nfe and r["n"] == N for r in summary["records"])
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["nfe"] == nfe
    assert (tmp_path / "out" / "grid.png").is_file()


def test_a_model_without_ema_reports_raw_weights(tmp_path, shared_cache):
    """Review A9: NCSN keeps no EMA (``ema_decay: null``) and samples with its raw weights; its records
    said ``weights: ema`` because ``use_ema`` was true. They say what was used."""
    ckpt = write_score_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "ncsn_digits", ["net.ngf=8"])
    summary = _eval(ckpt, tmp_path / "out", shared_cache, "metrics=[fid]", "sampler.steps=3")
    assert summary["weights"] == "raw" and all(r["weights"] == "raw" for r in summary["records"])


def test_ode_sampler_and_prior_of_the_model(tmp_path, shared_cache):
    """``sampler=ode`` replaces PC; its steps are adaptive and the NFE is the solver's. A VE model starts
    from its own prior N(0, σ_max² I), drawn per global sample index as diffzoo-sample does."""
    ckpt = write_score_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "sde_ve_digits", TINY_UNET)
    summary = _eval(ckpt, tmp_path / "out", shared_cache, "metrics=[fid]", "sampler=ode", "sampler.rtol=1e-2", "sampler.atol=1e-2")
    assert summary["sampler"] == "ode" and summary["steps"] is None and summary["nfe"] > 2

    module = load_module(ckpt)
    seen, prior = {}, module.schedule.prior_sample
    module.schedule.prior_sample = lambda *a, **kw: seen.setdefault("x_T", prior(*a, **kw))
    list(draw_samples(module, 4, seed=0, batch_size=4, sampler=module.sampler.with_steps(6)))
    assert 0.5 * module.schedule.sigma_max < float(seen["x_T"].std()) < 2 * module.schedule.sigma_max


def test_wrong_sampler_for_the_process_is_refused(tmp_path, shared_cache):
    ckpt = write_score_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "sde_vp_digits", TINY_UNET)
    with pytest.raises(ConfigError, match="sampler=annealed_langevin walks a σ ladder"):
        _eval(ckpt, tmp_path / "out", shared_cache, "metrics=[fid]", "sampler=annealed_langevin")


def test_nll_ode_for_sde_models_and_nll_vlb_for_discrete_ones(tmp_path, shared_cache):
    sde_ckpt = write_score_checkpoint(tmp_path / "sde" / "checkpoints" / "last.ckpt", "sde_vp_digits", TINY_UNET)
    nll = ["nll.n=6", "nll.batch_size=4", "nll.rtol=1e-3", "nll.atol=1e-3"]
    one = _eval(sde_ckpt, tmp_path / "a", shared_cache, "metrics=[nll_ode]", *nll)
    record = one["records"][0]
    assert record["name"] == "nll_ode_val6" and record["n"] == 6 and record["nfe"] > 0 and record["extra"]["unit"] == "bits/dim"
    assert 0 < one["nll_ode_val6"] < 100 and one["sampled"] is False and "grid" not in one
    # example i is scored with its own generator: the batch size does not change its number
    other = _eval(sde_ckpt, tmp_path / "b", shared_cache, "metrics=[nll_ode]", *nll[:1], "nll.batch_size=6", *nll[2:])
    assert other["nll_ode_val6"] == pytest.approx(one["nll_ode_val6"], rel=1e-3)
    with pytest.raises(ConfigError, match=r"nll_vlb\] needs a discrete-time model"):
        _eval(sde_ckpt, tmp_path / "c", shared_cache, "metrics=[nll_vlb]", *nll)

    ddpm_ckpt = write_tiny_checkpoint(tmp_path / "ddpm" / "checkpoints" / "last.ckpt")  # T = 100
    vlb = _eval(ddpm_ckpt, tmp_path / "d", shared_cache, "metrics=[fid,nll_vlb]", "sampler.steps=3", "nll.n=4", "nll.steps=10")
    record = next(r for r in vlb["records"] if r["metric"] == "nll_vlb")
    assert record["name"] == "nll_vlb_val4" and record["nfe"] == 10 and record["extra"]["variance"] == "fixedlarge"
    assert record["extra"]["clip_x0"] is True  # review A8: the comparable bound (improved-diffusion clips), and it says so
    assert math.isfinite(vlb["nll_vlb_val4"]) and vlb["nll_vlb_val4"] > 0 and math.isfinite(vlb[f"fid_digits{N}"])
    with pytest.raises(ConfigError, match=r"nll_ode\]: a σ ladder \(NCSN\) has no continuous-time SDE"):
        _eval(_ladder_checkpoint(tmp_path), tmp_path / "e", shared_cache, "metrics=[nll_ode]", "nll.n=4")


def _ladder_checkpoint(tmp_path):
    return write_score_checkpoint(tmp_path / "ladder" / "checkpoints" / "last.ckpt", "ncsnv2_digits", ["net.ngf=8"])


def test_nll_ode_and_nll_vlb_on_the_same_ddpm_model(tmp_path, shared_cache):
    """A DDPM checkpoint (linear β, T = 100) reports both likelihoods on the same held-out examples:
    ``nll_ode`` through the VP SDE its β table discretises (β_min = T·β_1 = 0.01, β_max = T·β_T = 2,
    Score SDE App. B) and ``nll_vlb``. On this untrained net no inequality between them must hold;
    each value is checked against a direct call on the same examples with the same generators."""
    from diffzoo.metrics.data import load_split
    from diffzoo.metrics.ode_nll import ode_nll
    from diffzoo.metrics.vlb import vlb_bits_per_dim
    from diffzoo.utils.random import per_sample_generators

    ckpt = write_tiny_checkpoint(tmp_path / "ddpm" / "checkpoints" / "last.ckpt")  # T = 100, linear β
    out = _eval(ckpt, tmp_path / "both", shared_cache, "metrics=[nll_ode,nll_vlb]", "nll.n=4", "nll.batch_size=4",
                "nll.rtol=1e-3", "nll.atol=1e-3")
    ode, vlb = (next(r for r in out["records"] if r["metric"] == m) for m in ("nll_ode", "nll_vlb"))
    assert ode["name"] == "nll_ode_val4" and vlb["name"] == "nll_vlb_val4" and ode["reference"] == vlb["reference"]
    assert ode["extra"]["route"] == "ddpm_vpsde" and ode["extra"]["N"] == 100 and ode["extra"]["time_scale"] == 99.0
    assert (ode["extra"]["beta_min"], ode["extra"]["beta_max"]) == pytest.approx((0.01, 2.0), rel=1e-9)
    assert ode["nfe"] > 2 and vlb["nfe"] == 100 and ode["extra"]["unit"] == vlb["extra"]["unit"] == "bits/dim"

    module = load_module(ckpt)
    x = load_split(DigitsDataModule(), "val", 4).x.float() / 127.5 - 1
    direct_ode = ode_nll(module.denoiser(), x, rtol=1e-3, atol=1e-3, generator=per_sample_generators(0, range(4), stream="nll"))
    assert out["nll_ode_val4"] == pytest.approx(float(direct_ode.bits_per_dim.double().mean()), rel=1e-4)
    direct_vlb = vlb_bits_per_dim(module.denoiser(), module.schedule, x, clip_x0=True,
                                  generator=per_sample_generators(0, range(4), stream="nll"))
    assert out["nll_vlb_val4"] == pytest.approx(float(direct_vlb.total_bpd.double().mean()), rel=1e-4)


def test_nll_ode_refuses_a_cosine_ddpm_model(tmp_path, shared_cache):
    """Only DDPM's linear β has a VP SDE limit: a cosine-schedule checkpoint is refused in one line
    naming its β table, and pointed to nll_vlb."""
    from omegaconf import OmegaConf

    from diffzoo.lit.build import build_module
    from tests.integration.test_eval_cli import tiny_run_config

    cfg = tiny_run_config()
    cfg["schedule"] = OmegaConf.to_container(OmegaConf.load(f"{CONFIG_DIR}/schedule/cosine.yaml"))
    cfg["schedule"]["betas"]["T"] = 100
    module = build_module(OmegaConf.create(cfg), (1, 8, 8))
    ckpt = tmp_path / "cosine" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": module.state_dict(), "global_step": 1,
                "diffzoo": {"config": module.run_config, "data_shape": [1, 8, 8], "wandb_run_id": None}}, ckpt)
    with pytest.raises(ConfigError, match=r"nll_ode\]: the β table cosine_betas is not DDPM's linear"):
        _eval(ckpt, tmp_path / "out", shared_cache, "metrics=[nll_ode]", "nll.n=4")


def test_evaluation_callback_on_a_score_model(tmp_path, shared_cache):
    from diffzoo.lit.build import build_module
    from tests.helpers import compose_train

    torch.manual_seed(0)
    cfg = compose_train(["experiment=sde_ve_digits", *TINY_UNET, "data.batch_size=16"])
    module = build_module(cfg, (1, 8, 8))
    callback = Evaluation(every_n_steps=None, n=8, batch_size=8, sampler={"steps": 4}, metrics=["fid", "nll_ode"], kid_subsets=5,
                          classifier_epochs=2, cache_dir=str(shared_cache), nll={"n": 3, "rtol": 1e-2, "atol": 1e-2})
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=2, logger=False, callbacks=[callback], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=16))
    history = [json.loads(line) for line in (tmp_path / "eval" / "history.jsonl").read_text().splitlines()]
    assert {r["name"] for r in history} == {"fid_digits8", "nll_ode_val3"}
    assert next(r for r in history if r["metric"] == "fid")["nfe"] == 4  # N = 2: predictor + corrector per step
    assert "eval/nll_ode_val3" in trainer.callback_metrics
