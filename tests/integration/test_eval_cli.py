"""``diffzoo-eval``: 1 and 2 processes (gloo) draw the same samples and get the same numbers; the
gathered count is exactly N when N is not divisible by the world size; Inception offline fails
at once with instructions.

The checkpoint is a freshly initialised tiny model written in diffzoo's checkpoint format (what
is tested is evaluation, not training). Multi-process runs go through a subprocess."""

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from diffzoo.config import CONFIG_DIR, compose_config
from diffzoo.lit.build import build_module
from tests.helpers import run_cli

N = 37  # not divisible by 2 processes, nor by the batch size
BATCH = 8


def tiny_run_config(data: str = "digits") -> dict:
    """A resolved run config: the real data / schedule / objective / sampler / model groups, a tiny
    U-Net, and T = 100 steps (sampling here uses 5 respaced steps)."""
    cfg = OmegaConf.create({
        "seed": 0, "name": "tiny",
        "data": OmegaConf.load(f"{CONFIG_DIR}/data/{data}.yaml"),
        "schedule": OmegaConf.load(f"{CONFIG_DIR}/schedule/linear.yaml"),
        "objective": OmegaConf.load(f"{CONFIG_DIR}/objective/simple.yaml"),
        "sampler": OmegaConf.load(f"{CONFIG_DIR}/sampler/ddpm.yaml"),
        "model": OmegaConf.load(f"{CONFIG_DIR}/model/diffusion.yaml"),
        "optimizer": OmegaConf.load(f"{CONFIG_DIR}/optimizer/adam.yaml"),
        "lr_scheduler": OmegaConf.load(f"{CONFIG_DIR}/lr_scheduler/warmup.yaml"),
        "ema": OmegaConf.load(f"{CONFIG_DIR}/ema/default.yaml"),
        "net": {"_target_": "diffzoo.networks.UNet", "in_channels": 1, "out_channels": 1, "image_size": 8,
                "base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
                "dropout": 0.0, "num_groups": 8},
    })
    cfg.schedule.betas.T = 100
    return OmegaConf.to_container(cfg, resolve=True)


def write_tiny_checkpoint(path, data: str = "digits"):
    """A checkpoint as diffzoo-train writes it (state dict with EMA weights, stored config)."""
    torch.manual_seed(0)
    cfg = OmegaConf.create(tiny_run_config(data))
    module = build_module(cfg, (1, 8, 8))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "global_step": 7,
                "diffzoo": {"config": module.run_config, "data_shape": [1, 8, 8], "wandb_run_id": None}}, path)
    return path


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache per test session: the digits classifier is trained by the first test needing it."""
    return tmp_path_factory.getbasetemp() / "diffzoo-metrics-cache"


def _eval(ckpt, out, cache, devices, extra=()):
    args = [f"ckpt_path={ckpt}", f"n={N}", f"batch_size={BATCH}", "sampler.steps=5", "metrics=[fid,kid,is]",
            f"out={out}", f"devices={devices}", "accelerator=cpu", "save_samples=true", "progress=false",
            "kid.subsets=10", "classifier.epochs=3", *extra]
    return run_cli("diffzoo.evaluate", args, cwd=out.parent, timeout=300,
                   env={"DIFFZOO_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def test_two_processes_equal_one_process(tmp_path, shared_cache):
    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    one = _eval(ckpt, tmp_path / "one", shared_cache, 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _eval(ckpt, tmp_path / "two", shared_cache, 2, ["shard=strided"])
    assert two.returncode == 0, two.stderr[-3000:]

    s1 = np.load(tmp_path / "one" / "samples.npz")["images"]
    s2 = np.load(tmp_path / "two" / "samples.npz")["images"]
    assert s1.shape == (N, 8, 8, 1) and s1.dtype == np.uint8
    assert np.array_equal(s1, s2)  # bit-identical sample sets

    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m1["world_size"] == 1
    names = ["fid_digits37", "kid_digits37", "is_digits37"]
    for name in names:
        assert math.isfinite(m1[name]) and m1[name] == m2[name], name
    for record in m2["records"]:
        assert record["n"] == N and record["weights"] == "ema" and record["nfe"] == 5
    fid = next(r for r in m1["records"] if r["metric"] == "fid")
    assert fid["reference"]["split"] == "train" and len(fid["reference"]["hash"]) == 16


def test_samples_match_diffzoo_sample(tmp_path, shared_cache):
    """Evaluation's sample i is diffzoo-sample's sample i (same seed, same sampler settings)."""
    from diffzoo.metrics.distributed import draw_samples
    from diffzoo.lit.build import load_module
    from diffzoo.sample import sample
    from diffzoo.utils.images import to_uint8

    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    cfg = OmegaConf.create({"ckpt_path": str(ckpt), "n": 6, "seed": 3, "batch_size": 4, "use_ema": True,
                            "out": str(tmp_path / "sampled"), "device": "cpu", "sampler": {"steps": 10}})
    sample(cfg)
    reference = np.load(tmp_path / "sampled" / "samples.npz")["images"]
    module = load_module(ckpt)
    drawn = torch.cat([b.x for b in draw_samples(module, 6, seed=3, batch_size=5, sampler=module.sampler.with_steps(10))])
    assert np.array_equal(to_uint8(drawn).permute(0, 2, 3, 1).numpy(), reference)


def test_inception_offline_fails_at_once_with_instructions(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    proc = run_cli("diffzoo.evaluate", [f"ckpt_path={ckpt}", "n=4", "extractor=inception", "metrics=[fid]", "sampler.steps=2",
                                        f"out={tmp_path / 'out'}", "progress=false"],
                   cwd=tmp_path, timeout=60, env={"HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch_home")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "weights-inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message
    assert "-m diffzoo.metrics.inception" in message
    assert "Traceback" not in proc.stderr


def test_bad_option_names_the_key(tmp_path):
    from diffzoo.errors import ConfigError
    from diffzoo.evaluate import evaluate

    cfg = compose_config(config_name="eval", overrides=[f"ckpt_path={tmp_path / 'none.ckpt'}", "metrics=[fid,precision]"])
    with pytest.raises(ConfigError, match=r"metrics=.*'fid', 'kid', 'is'"):
        evaluate(cfg)
    cfg = compose_config(config_name="eval", overrides=[f"ckpt_path={tmp_path / 'none.ckpt'}", "shard=padded"])
    with pytest.raises(ConfigError, match=r"shard='padded' is not one of \['contiguous', 'strided'\]"):
        evaluate(cfg)
    cfg = compose_config(config_name="eval", overrides=[f"ckpt_path={tmp_path / 'none.ckpt'}", "sample_steps=100"])
    with pytest.raises(ConfigError, match=r"sample_steps=100 was retired: use sampler.steps=100"):
        evaluate(cfg)


def test_sampler_override_is_recorded_with_its_nfe_and_eta(tmp_path, shared_cache):
    from diffzoo.evaluate import evaluate

    ckpt = write_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")  # trained with ddpm
    cfg = compose_config(config_name="eval", overrides=[
        f"ckpt_path={ckpt}", "n=20", "batch_size=8", "sampler=ddim", "sampler.steps=5", "sampler.eta=0.5",
        "metrics=[fid]", "classifier.epochs=3", "progress=false", f"paths.cache_dir={shared_cache}"])
    summary = evaluate(cfg)
    record = summary["records"][0]
    assert (record["name"], record["sampler"], record["nfe"], record["eta"]) == ("fid_digits20", "ddim", 5, 0.5)
    out = tmp_path / "run" / "eval" / "ddim_steps5_n20_seed0_ema"
    assert json.loads((out / "metrics.json").read_text())["fid_digits20"] == record["value"]
    assert (out / "grid.png").is_file()
