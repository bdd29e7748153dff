"""The latent diffusion configs: the f sweep (LDM §4.1, f = 1, 2, 4, 8) as one multirun over the ``ldm_f`` group,
the first stage from a checkpoint path (an untrained architecture only under ``trainer.fast_dev_run``)."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.errors import InstantiationException

from diffzoo.config import compose_config
from diffzoo.errors import ConfigError
from diffzoo.lit.build import build_module
from diffzoo.lit.first_stage_loading import first_stage_from

pytest.importorskip("diffzoo.networks.autoencoder")  # the KL / VQ autoencoders (issue 15, part 1)

LATENTS = {1: (1, 32, 32), 2: (2, 16, 16), 4: (3, 8, 8), 8: (4, 4, 4)}


@pytest.mark.parametrize("f", [1, 2, 4, 8])
def test_f_sweep_builds_trains_and_samples(f):
    cfg = compose_config("train", ["experiment=ldm_kl_f4_fashion_mnist", f"+ldm_f=f{f}", "trainer.fast_dev_run=true"])
    module = build_module(cfg, (1, 32, 32))
    assert module.first_stage.downsampling_factor == f and module.latent_shape == LATENTS[f]
    assert module.latent_scaling == ("none" if f == 1 else "std")
    torch.manual_seed(0)
    batch = {"x": torch.rand(4, 1, 32, 32) * 2 - 1}
    module.on_train_batch_start(batch, 0)
    assert torch.isfinite(module.training_step(batch, 0))
    x = module.sample(2, steps=2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 32, 32) and torch.isfinite(x).all()


def test_null_checkpoint_path_is_refused_outside_fast_dev_run():
    cfg = compose_config("train", ["experiment=ldm_kl_f4_fashion_mnist"])
    with pytest.raises((ConfigError, InstantiationException), match="first_stage.ckpt_path is null"):  # Hydra wraps it
        build_module(cfg, (1, 32, 32))
    with pytest.raises(ConfigError, match="does not exist"):
        first_stage_from("/nonexistent/last.ckpt")


@pytest.mark.slow
def test_f_sweep_is_one_multirun(tmp_path):
    from diffzoo.data.synthetic import write_fake_fashion_mnist
    from tests.helpers import TINY, run_cli

    write_fake_fashion_mnist(tmp_path / "data")
    overrides = [o for o in TINY if o != "trainer.max_steps=3"] + [
        "experiment=ldm_kl_f4_fashion_mnist", "+ldm_f=f1,f2,f4,f8", "trainer.max_steps=2", "trainer.fast_dev_run=true",
        f"paths.data_dir={tmp_path / 'data'}", "data.system_dir=null", "data.batch_size=8"]
    proc = run_cli("diffzoo.train", ["--multirun", *overrides], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "runs" / "ldm_kl_f4_fashion_mnist").glob("multirun_*")
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["done"] * 4


@pytest.mark.slow
def test_two_commands_autoencoder_then_ldm_and_the_ldm_checkpoint_rebuilds_alone(tmp_path):
    # diffzoo-train experiment=ae_kl_f4_fashion_mnist; diffzoo-train experiment=ldm_kl_f4_fashion_mnist first_stage.ckpt_path=…
    from diffzoo.data.synthetic import write_fake_fashion_mnist
    from diffzoo.lit.build import load_module
    from tests.helpers import train_tiny

    write_fake_fashion_mnist(tmp_path / "data")
    data = [f"paths.data_dir={tmp_path / 'data'}", "data.system_dir=null", "data.batch_size=8", "final_samples=0"]
    ae = train_tiny("ae_kl_f4_fashion_mnist", tmp_path / "ae", *data, "++callbacks.reconstruction=null")
    ldm_ckpt = train_tiny("ldm_kl_f4_fashion_mnist", tmp_path / "ldm", *data, f"first_stage.ckpt_path={ae}")
    w = torch.load(ae, weights_only=False)["state_dict"]["net.decoder.conv_out.weight"]  # ae_*: no EMA
    ae.unlink()  # the LDM checkpoint holds the first stage's weights and its architecture
    module = load_module(ldm_ckpt)
    assert torch.equal(module.first_stage.decoder.conv_out.weight, w)
    assert torch.isfinite(module.scale_factor) and module.latent_scaling == "std"
    a = module.sample(2, steps=2, generator=torch.Generator().manual_seed(0))
    b = load_module(ldm_ckpt).sample(2, steps=2, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 1, 32, 32) and torch.equal(a, b)


@pytest.mark.slow  # ~1 min: reads all of Fashion-MNIST and encodes 4k images (the fast suite does it on digits)
def test_kl_latents_of_fashion_mnist_have_unit_std_after_the_first_batch_scale(tmp_path):
    # ldm_kl_f4_fashion_mnist's first stage (untrained here) on Fashion-MNIST: s = 1/std(z) of the first training batch
    # of 128 makes the latents of 4096 other training images unit-std, up to the spread of the first-batch estimate
    # over batches (measured on these data: 4 of its standard deviations)
    from diffzoo.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(root=str(tmp_path), image_size=32, batch_size=128)
    try:
        dm.setup("fit")
    except Exception as err:  # noqa: BLE001 - the Debian files are optional
        pytest.skip(f"Fashion-MNIST not available: {err}")
    cfg = compose_config("train", ["experiment=ldm_kl_f4_fashion_mnist", "trainer.fast_dev_run=true"])
    torch.manual_seed(0)
    module = build_module(cfg, (1, 32, 32))
    x = dm.train_dataset_tensor()[: 128 * 33]
    batches = x.reshape(33, 128, 1, 32, 32)
    with torch.no_grad():
        s = module.fit_scale(batches[0]).item()
        estimates = torch.stack([1 / module.first_stage.encode(b).std() for b in batches[1:9]])
        z = torch.cat([module.encode(b) for b in batches[1:]])
    spread = (estimates.std() / estimates.mean()).item()
    assert s == module.scale_factor.item()
    assert z.std().item() == pytest.approx(1.0, abs=4 * spread + 1e-3)
