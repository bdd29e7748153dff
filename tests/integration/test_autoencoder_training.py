"""The first-stage autoencoders train through the real ``train()``: a resumed run is bit-exact with an
uninterrupted one (both optimisers, the discriminator's BatchNorm statistics, the posterior noise), on
both sides of ``disc_start``; and ``load_first_stage`` returns the frozen autoencoder of a checkpoint."""

import pytest
import torch

from diffzoo.data.synthetic import write_fake_fashion_mnist
from diffzoo.train import train
from tests.helpers import TINY, compose_train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(root)
    return root


def _run(run_dir, steps, data_dir, experiment="ae_kl_f4_fashion_mnist", extra=()):
    overrides = [f"experiment={experiment}", *TINY, f"trainer.max_steps={steps}", "data.batch_size=8",
                 "net.ch=16", "net.norm_groups=8", "objective.disc_ndf=8", "objective.disc_start=2",
                 f"paths.data_dir={data_dir}", "data.system_dir=null", "ckpt_path=last",
                 "callbacks.reconstruction.extractor=none", "callbacks.reconstruction.n=16",
                 "+callbacks.losses._target_=tests.helpers.make_loss_recorder", f"+callbacks.losses.path={run_dir}/losses.txt",
                 *extra]
    return train(compose_train(overrides, run_dir=run_dir))


@pytest.mark.parametrize("experiment, extra", [
    ("ae_kl_f4_fashion_mnist", ["lr_scheduler=warmup", "lr_scheduler.warmup_steps=3"]),  # both schedulers resume too
    pytest.param("ae_vq_f4_fashion_mnist", [], marks=pytest.mark.slow),
])
def test_autoencoder_resume_is_bit_exact(tmp_path, data_dir, experiment, extra):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(straight, 4, data_dir, experiment, extra)
    _run(resumed, 2, data_dir, experiment, extra)
    _run(resumed, 4, data_dir, experiment, extra)
    lines = (straight / "losses.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4"]  # global_step counts batches, not optimizer calls
    assert (resumed / "losses.txt").read_text().splitlines() == lines
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    assert any(k.startswith("objective.discriminator.") for k in a["state_dict"])
    for key, value in a["state_dict"].items():  # autoencoder, discriminator (BatchNorm stats too), logvar
        assert torch.equal(value, b["state_dict"][key]), key
    assert len(a["optimizer_states"]) == 2
    assert a["lr_schedulers"] == b["lr_schedulers"] and len(a["lr_schedulers"]) == (2 if extra else 0)
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"]):
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_first_stage_gives_the_frozen_autoencoder(tmp_path, data_dir):
    from diffzoo.lit.autoencoder import load_first_stage
    from diffzoo.networks.first_stage import FirstStage

    metrics = _run(tmp_path / "run", 1, data_dir, extra=["ema=default", "ema.decay=0.5"])
    # the reconstruction callback measured 16 held-out images at the end (PSNR in dB, SSIM ≤ 1)
    assert metrics["eval_psnr"] > 0 and -1 <= metrics["eval_ssim"] <= 1
    assert metrics["eval_records"][0]["n"] == 16
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    net = load_first_stage(ckpt)
    assert isinstance(net, FirstStage) and net.kind == "kl" and net.downsampling_factor == 4
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    for key, value in net.state_dict().items():  # the EMA weights by default, the raw ones on request
        assert torch.equal(value, state[f"ema.shadow.{key}"]), key
    raw = load_first_stage(ckpt, use_ema=False)
    assert all(torch.equal(v, state[f"net.{k}"]) for k, v in raw.state_dict().items())
    assert any(not torch.equal(state[f"net.{k}"], state[f"ema.shadow.{k}"]) for k in raw.state_dict())
    assert net.encode(torch.zeros(2, 1, 32, 32)).shape == (2, 3, 8, 8)
