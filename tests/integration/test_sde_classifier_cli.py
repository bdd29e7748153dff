"""Score SDE class-conditional sampling end to end: a tiny VP SDE model and a tiny time-dependent
classifier trained by the real ``train()``, then ``diffzoo-sample ... guidance=classifier y=3``."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from diffzoo.errors import ConfigError
from diffzoo.guidance import ClassifierGuidance, ScoreClassifierGuidance
from diffzoo.lit import check_guidance_fits, load_classifier_guidance
from diffzoo.lit.build import build_module, load_module
from diffzoo.sample import sample
from diffzoo.train import train
from tests.helpers import TINY, compose_train, run_cli, train_tiny


@pytest.fixture(scope="module")
def sde_ckpt(tmp_path_factory):
    return train_tiny("sde_vp_digits", tmp_path_factory.mktemp("sde_vp_run"), "net.base_channels=16")


@pytest.fixture(scope="module")
def sde_classifier_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sde_cls_run")
    train_tiny("sde_classifier_digits", run_dir, "net.base_channels=16", "net.num_head_channels=16")
    return run_dir


def test_classifier_logs_accuracy_per_t_range(sde_classifier_run):
    header = next(sde_classifier_run.glob("**/metrics.csv")).read_text().splitlines()[0].split(",")
    assert {"train/acc_t0.00-0.25", "train/acc_t0.75-1.00", "train/loss"} <= set(header)


def test_sample_cli_with_a_time_dependent_classifier_and_one_class(sde_ckpt, sde_classifier_run, tmp_path):
    cls_ckpt = sde_classifier_run / "checkpoints" / "last.ckpt"
    proc = run_cli("diffzoo.sample", [f"ckpt_path={sde_ckpt}", "n=3", "y=3", "sampler.steps=5", f"out={tmp_path / 's'}",
                                      "guidance=classifier", f"guidance.classifier_ckpt={cls_ckpt}", "guidance.scale=1"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    npz = np.load(tmp_path / "s" / "samples.npz")
    assert npz["y"].tolist() == [3, 3, 3] and npz["images"].shape == (3, 8, 8, 1)
    assert "guidance: classifier" in proc.stdout and "nfe: 5" in proc.stdout


def test_guidance_changes_the_samples_and_scale_zero_does_not(sde_ckpt, sde_classifier_run, tmp_path):
    cls_ckpt = str(sde_classifier_run / "checkpoints" / "last.ckpt")
    base = {"ckpt_path": str(sde_ckpt), "n": 2, "seed": 0, "batch_size": 2, "use_ema": True, "sampler": {"steps": 4},
            "device": "cpu", "y": 3}
    g = {"_target_": "diffzoo.lit.load_classifier_guidance", "classifier_ckpt": cls_ckpt, "form": "eps"}
    plain = np.load(sample(OmegaConf.create({**base, "y": None, "out": str(tmp_path / "p")}))["npz"])["images"]
    zero = sample(OmegaConf.create({**base, "out": str(tmp_path / "z"), "guidance": {**g, "scale": 0.0}}))
    big = sample(OmegaConf.create({**base, "out": str(tmp_path / "b"), "guidance": {**g, "scale": 50.0}}))
    assert zero["guidance"] == "classifier" and zero["nfe"] == 4
    assert np.array_equal(np.load(zero["npz"])["images"], plain)
    assert not np.array_equal(np.load(big["npz"])["images"], plain)


def test_a_discrete_classifier_still_gives_adm_guidance(tmp_path):
    run_dir = tmp_path / "adm_cls"
    train(compose_train(["experiment=adm_classifier_digits", *TINY, "trainer.max_steps=1", "net.base_channels=16",
                         "net.num_head_channels=16"], run_dir=run_dir))
    guidance = load_classifier_guidance(str(run_dir / "checkpoints" / "last.ckpt"), scale=2.0, form="mean")
    assert isinstance(guidance, ClassifierGuidance) and (guidance.scale, guidance.form) == (2.0, "mean")


def test_guidance_and_model_mismatches_name_the_fix(sde_ckpt, sde_classifier_run):
    score_model = load_module(sde_ckpt)
    guidance = load_classifier_guidance(str(sde_classifier_run / "checkpoints" / "last.ckpt"))
    assert isinstance(guidance, ScoreClassifierGuidance) and guidance.classifier.num_classes == 10
    check_guidance_fits(guidance, score_model)
    ddpm = build_module(compose_train(["experiment=ddpm_digits", "net.base_channels=16"]), (1, 8, 8))
    with pytest.raises(ConfigError, match="adm_classifier"):
        check_guidance_fits(guidance, ddpm)
    with pytest.raises(ConfigError, match="sde_classifier"):
        check_guidance_fits(ClassifierGuidance(grad_fn=lambda x, t, y: torch.zeros_like(x)), score_model)
    with pytest.raises(ValueError, match="guidance.form=eps"):
        load_classifier_guidance(str(sde_classifier_run / "checkpoints" / "last.ckpt"), form="mean")
    with pytest.raises(Exception, match="not a noise-aware classifier"):
        load_classifier_guidance(str(sde_ckpt))


def test_the_guidance_sweep_starts_a_ve_model_from_its_prior(tmp_path, monkeypatch):
    """Review A5: the sweep drew x_T from N(0, I) whatever the model; it now samples through the one
    loop, so a VE model with a VE-trained classifier starts at σ_max (4.815 on digits), not at σ = 1."""
    from diffzoo.config import compose_config
    from diffzoo.guidance_sweep import sweep
    from diffzoo.schedules import VESDE
    from tests.integration.score_ckpt import TINY_UNET, write_score_checkpoint

    ve = ["schedule=vesde", "schedule.sigma_max=4.815", "model.data_transform=unit"]
    model = write_score_checkpoint(tmp_path / "ve" / "checkpoints" / "last.ckpt", "sde_ve_digits", TINY_UNET)
    classifier = train_tiny("sde_classifier_digits", tmp_path / "cls", "net.base_channels=16", "net.num_head_channels=16",
                            "trainer.max_steps=1", *ve)
    starts = []
    prior = VESDE.prior_sampling
    monkeypatch.setattr(VESDE, "prior_sampling", lambda self, *a, **kw: starts.append(prior(self, *a, **kw)) or starts[-1])
    cfg = compose_config("guidance_sweep", [f"ckpt_path={model}", "guidance=classifier", f"guidance.classifier_ckpt={classifier}",
                                            "guidance.scale=1", "n=8", "batch_size=8", "sampler.steps=4", "metrics=[fid]",
                                            "classifier.epochs=1", f"sweep_dir={tmp_path / 'sweep'}", "device=cpu",
                                            f"paths.cache_dir={tmp_path / 'cache'}", "progress=false"])
    record = sweep(cfg)
    assert record["sampler"] == "pc" and record["nfe"] == 4
    std = float(torch.cat(starts).std())
    assert 0.8 * 4.815 < std < 1.2 * 4.815, std
