"""Every experiment composes, and runs a fast_dev_run through the real ``train()``; the DDPM
CIFAR-10 experiment holds the paper's values."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

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
SHRINK = {
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


def _fast_dev_run(experiment, run_dir, data_dir, extra=()):
    cfg = compose_train(
        [f"experiment={experiment}", "trainer.fast_dev_run=true", "logger=csv", f"paths.data_dir={data_dir}",
         "data.num_workers=0", "callbacks.evaluation=null", *extra],
        run_dir=run_dir,
    )
    if "system_dir" in cfg.data:
        cfg.data.system_dir = None  # read the fake files, never the machine's
    metrics = train(cfg)
    assert metrics["step"] == 1
    assert (run_dir / "samples" / "final.png").is_file()
    assert (run_dir / "metrics.json").is_file()
    assert (run_dir / "config.yaml").is_file()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment, tmp_path, fake_data_dir):
    """One step of every experiment as configured, with a batch of 8 (the paper-size nets make
    a full batch take minutes on a CPU; ``test_experiment_fast_dev_run_full_batch`` runs it)."""
    _fast_dev_run(experiment, tmp_path / "run", fake_data_dir, ["data.batch_size=8", *SHRINK.get(experiment, [])])


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run_full_batch(experiment, tmp_path, fake_data_dir):
    _fast_dev_run(experiment, tmp_path / "run", fake_data_dir)


def test_ddpm_cifar10_is_the_paper_recipe():
    """Ho et al. 2020 §4 / App. B and hojonathanho/diffusion run_cifar.py."""
    cfg = compose_train(["experiment=ddpm_cifar10"])
    betas = cfg.schedule.betas
    assert (betas.T, betas.beta_start, betas.beta_end) == (1000, 1e-4, 0.02)
    assert cfg.schedule.betas._target_.endswith("linear_betas") and "sqrt" not in cfg.schedule.betas._target_
    assert cfg.objective._target_.endswith("SimpleLoss")
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == 2e-4
    assert cfg.model.lr_scheduler.warmup_steps == 5000
    assert cfg.data.batch_size == 128 and cfg.data.hflip is True
    assert cfg.trainer.gradient_clip_val == 1.0
    assert cfg.trainer.max_steps == 800_000
    assert cfg.model.ema_decay == 0.9999
    assert cfg.sampler.variance == "fixedlarge" and cfg.sampler.clip_x0 is True
    net = cfg.net
    assert (net.base_channels, tuple(net.channel_mult), net.num_res_blocks, tuple(net.attention_resolutions), net.dropout) == (
        128, (1, 2, 2, 2), 2, (16,), 0.1)
    n_params = sum(p.numel() for p in instantiate(net).parameters())
    assert round(n_params / 1e6, 1) == 35.7
