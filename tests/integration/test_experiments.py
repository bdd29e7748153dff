"""Every experiment composes, and runs ``trainer.fast_dev_run=true`` through the real ``train()`` with
its callbacks as configured (the evaluation callback included); the DDPM CIFAR-10 experiment holds
the paper's values."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from diffzoo.train import train
from diffzoo.data.synthetic import write_fake_cifar10, write_fake_fashion_mnist, write_fake_image_folder
from tests.helpers import EXPERIMENTS, compose_train


@pytest.fixture(scope="module")
def fake_data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_fake_cifar10(root)
    write_fake_fashion_mnist(root)
    write_fake_image_folder(root)
    return root


# Paper-size ImageNet models (0.3-0.4B parameters, 64-128 px) take minutes and many GiB for one
# CPU step: the fast suite runs their pipeline with a narrow, shallow net of the same layout;
# the slow full-batch test below runs them as configured.
_SMALL_UNET = ["net.base_channels=32", "net.num_res_blocks=1"]
SHRINK = {  # the paper-size nets at a CPU-test width (the slow full-batch test runs them as configured)
    **{e: _SMALL_UNET for e in ("ddpm_cifar10", "iddpm_cifar10", "cfg_cifar10", "sde_vp_cifar10", "sde_ve_cifar10",
                                "sde_subvp_cifar10", "sde_vp_cifar10_ddpmpp", "sde_subvp_cifar10_ddpmpp", "sde_ve_cifar10_ncsnpp",
                                "edm_cifar10")},
    **{e: ["net.ngf=32"] for e in ("ncsn_cifar10", "ncsnv2_cifar10", "ncsnv2_fashion_mnist")},
    "adm_imagenet64": ["net.base_channels=32", "net.num_res_blocks=1", "net.num_head_channels=32"],
    "adm_imagenet128": ["net.base_channels=32", "net.num_res_blocks=1", "net.num_head_channels=32"],
    "adm_classifier_imagenet128": ["net.base_channels=32", "net.num_res_blocks=1", "net.num_head_channels=32"],
}


def test_every_paper_experiment_is_listed():
    assert {"ddpm_digits", "ddpm_toy2d", "ddpm_fashion_mnist", "ddpm_cifar10"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    cfg = compose_train([f"experiment={experiment}"])
    assert cfg.name == experiment
    for group in ("data", "model", "trainer"):
        assert "_target_" in cfg[group], group
    for group in ("net", "schedule", "objective", "sampler"):  # optional parts (lit.build.PARTS)
        assert cfg[group] is None or "_target_" in cfg[group], group


class StandInInception(nn.Module):
    """A small random extractor in Inception's place: these machines have no Inception weights, and what
    a fast_dev_run checks is the wiring (the Inception path itself: tests/integration/test_eval_cli.py)."""

    space, resize, feature_dim, identity = "inception", "none", 16, "stand-in"

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16))
        self.head = nn.Linear(16, 10)

    @torch.no_grad()
    def forward(self, images):
        from diffzoo.metrics.features import Features

        f = self.net(images.float().expand(-1, 3, -1, -1) / 255)
        return Features(f, self.head(f))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One metrics cache for all the runs: each data set's feature classifier is trained once."""
    return tmp_path_factory.mktemp("metrics-cache")


def _fast_dev_run(experiment, run_dir, data_dir, cache, monkeypatch, extra=()):
    """``experiment=<e> trainer.fast_dev_run=true`` with every callback as configured; the other
    overrides only point at the fake data and keep the run small (batch 8, CSV logs)."""
    monkeypatch.setattr("diffzoo.metrics.inception.InceptionFeatures", StandInInception)
    cfg = compose_train(
        [f"experiment={experiment}", "trainer.fast_dev_run=true", "logger=csv", f"paths.data_dir={data_dir}",
         f"paths.cache_dir={cache}", "data.num_workers=0", *extra],
        run_dir=run_dir,
    )
    if "system_dir" in cfg.data:
        cfg.data.system_dir = None  # read the fake files, never the machine's
    metrics = train(cfg)
    assert metrics["step"] == 1
    assert (run_dir / "samples" / "final.png").is_file()
    assert (run_dir / "metrics.json").is_file()
    assert (run_dir / "config.yaml").is_file()
    if cfg.callbacks.get("evaluation"):
        assert (run_dir / "eval" / "history.jsonl").is_file(), experiment  # it evaluated, with the experiment's sampler


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment, tmp_path, fake_data_dir, shared_cache, monkeypatch):
    """One step of every experiment as configured, with a batch of 8 (the paper-size nets make
    a full batch take minutes on a CPU; ``test_experiment_fast_dev_run_full_batch`` runs it)."""
    _fast_dev_run(experiment, tmp_path / "run", fake_data_dir, shared_cache, monkeypatch,
                  ["data.batch_size=8", *SHRINK.get(experiment, [])])


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run_full_batch(experiment, tmp_path, fake_data_dir, shared_cache, monkeypatch):
    _fast_dev_run(experiment, tmp_path / "run", fake_data_dir, shared_cache, monkeypatch)


def test_fast_dev_run_from_the_command_line_with_a_sampler_of_its_own(tmp_path):
    """Item 6 of the denoiser-core issue: ``diffzoo-train experiment=ddim_digits trainer.fast_dev_run=true``
    failed (the evaluation callback respaced the schedule to 5 steps, then DDIM asked for 50 of them).
    The evaluation and the final samples now give the experiment's own sampler a small NFE budget."""
    from tests.helpers import run_cli

    proc = run_cli("diffzoo.train", ["experiment=ddim_digits", "trainer.fast_dev_run=true", f"run_dir={tmp_path / 'run'}",
                                     "logger=csv", f"paths.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, timeout=600,
                   env={"DIFFZOO_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = (tmp_path / "run" / "eval" / "history.jsonl").read_text()
    assert '"sampler": "ddim"' in history and '"nfe": 5' in history


def test_ddpm_cifar10_is_the_paper_recipe():
    """Ho et al. 2020 §4 / App. B and hojonathanho/diffusion run_cifar.py."""
    cfg = compose_train(["experiment=ddpm_cifar10"])
    betas = cfg.schedule.betas
    assert (betas.T, betas.beta_start, betas.beta_end) == (1000, 1e-4, 0.02)
    assert cfg.schedule.betas._target_.endswith("linear_betas") and "sqrt" not in cfg.schedule.betas._target_
    assert cfg.objective._target_.endswith("SimpleLoss")
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 2e-4
    assert cfg.lr_scheduler.warmup_steps == 5000
    assert cfg.data.batch_size == 128 and cfg.data.hflip is True
    assert cfg.trainer.gradient_clip_val == 1.0
    assert cfg.trainer.max_steps == 800_000
    assert cfg.ema.decay == 0.9999
    assert cfg.sampler.variance == "fixedlarge" and cfg.sampler.clip_x0 is True
    net = cfg.net
    assert (net.base_channels, tuple(net.channel_mult), net.num_res_blocks, tuple(net.attention_resolutions), net.dropout) == (
        128, (1, 2, 2, 2), 2, (16,), 0.1)
    n_params = sum(p.numel() for p in instantiate(net).parameters())
    assert round(n_params / 1e6, 1) == 35.7
