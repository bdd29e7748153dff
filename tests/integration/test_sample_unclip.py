"""``diffzoo-sample pipeline=unclip``: text → image (prompt, prompts) and image variations from PNG / NPY files
through the command line's config, over tiny random-weight prior and decoder checkpoints that share one CLIP,
and the optional upsamplers after the decoder (a tiny unconditional 8 → 16 super-resolution stage of
experiment=cdm_fashion_mnist_sr16). Grids have one labelled row per prompt or source, samples.npz holds what was
drawn, sample i depends on (seed, i) only, and bad input is one line naming the key."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffzoo.config import compose_config, register_resolvers
from diffzoo.errors import ConfigError
from diffzoo.evaluate import evaluate
from diffzoo.lit import build_module
from diffzoo.sample import sample

SMALL_DECODER = ["net.unet.base_channels=8", "net.unet.channel_mult=[1,2]", "net.unet.attention_resolutions=[]",
                 "net.unet.num_groups=4", "text_encoder.width=16", "text_encoder.layers=1"]
SMALL_PRIOR = ["net.width=16", "net.layers=1", "net.heads=2", "net.text_dim=16"]
SMALL_CLIP = ["model.clip.image_tower.widths=[8,8,8]", "model.clip.text_encoder.width=16", "model.clip.text_encoder.layers=1"]


SMALL_SR = ["net.backbone.base_channels=8", "net.backbone.channel_mult=[1,2]", "net.backbone.attention_resolutions=[]",
            "net.backbone.num_groups=4"]
UNCONDITIONAL_SR = ["model.conditional=false", "model.cond_drop_prob=0", "net.backbone.num_classes=null"]  # §2.1: unCLIP's upsamplers are unconditional


def _save(module, path, data_shape=(1, 8, 8)):
    torch.save({"state_dict": module.state_dict(), "diffzoo": {"config": module.run_config, "data_shape": list(data_shape)}},
               path)
    return str(path)


def _randomise(module, gen):
    """Random EMA weights everywhere (zero-initialised output layers too), so inputs change outputs."""
    with torch.no_grad():
        for p in module.ema.shadow.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny prior and decoder checkpoints (random weights) of the unCLIP experiments, on one CLIP; and a
    plain DDPM checkpoint (a wrong stage)."""
    register_resolvers()
    root = tmp_path_factory.mktemp("unclip")
    dec = build_module(compose_config("train", ["experiment=unclip_decoder_captioned_digits", *SMALL_DECODER, *SMALL_CLIP]), (1, 8, 8))
    prior = build_module(compose_config("train", ["experiment=unclip_prior_captioned_digits", *SMALL_PRIOR, *SMALL_CLIP]), (1, 8, 8))
    prior.clip.load_state_dict(dec.clip.state_dict())  # one CLIP for both stages, as trained from one clip_ckpt
    gen = torch.Generator().manual_seed(0)
    for m in (dec, prior):
        _randomise(m, gen)
    other = build_module(compose_config("train", ["experiment=unclip_prior_captioned_digits", *SMALL_PRIOR, *SMALL_CLIP]), (1, 8, 8))
    with torch.no_grad():
        for p in other.clip.parameters():
            p.add_(1.0)
    plain = build_module(compose_config("train", ["experiment=ddpm_digits", "net.base_channels=8", "net.channel_mult=[1,2]",
                                                  "net.attention_resolutions=[]", "net.num_groups=4"]), (1, 8, 8))
    # an 8 -> 16 upsampler whose low-resolution input is the decoder's 1x8x8 output, unconditional (§2.1), and the
    # class-conditional stage the experiment trains by default (refused)
    sr16 = build_module(compose_config("train", ["experiment=cdm_fashion_mnist_sr16", *SMALL_SR, *UNCONDITIONAL_SR]), (1, 16, 16))
    _randomise(sr16, gen)
    sr16_classes = build_module(compose_config("train", ["experiment=cdm_fashion_mnist_sr16", *SMALL_SR]), (1, 16, 16))
    return {"prior": _save(prior, root / "prior.ckpt"), "decoder": _save(dec, root / "decoder.ckpt"),
            "other_clip_prior": _save(other, root / "other.ckpt"), "plain": _save(plain, root / "plain.ckpt"),
            "sr16": _save(sr16, root / "sr16.ckpt", (1, 16, 16)),
            "sr16_classes": _save(sr16_classes, root / "sr16_classes.ckpt", (1, 16, 16))}


def _cfg(ckpts, *overrides, prior=True):
    base = ["pipeline=unclip", f"pipeline.decoder.ckpt_path={ckpts['decoder']}", "pipeline.prior.sampler.steps=3",
            "pipeline.decoder.sampler.steps=3", "device=cpu", "n=4"]
    if prior:
        base.append(f"pipeline.prior.ckpt_path={ckpts['prior']}")
    return compose_config("sample", [*base, *overrides])


def _upsamplers(*paths, sampler="{steps:3}", **settings) -> str:
    """The override ``pipeline.upsamplers=[...]``: one entry per checkpoint, with ``sampler`` and ``settings``."""
    extra = "".join(f",{k}:{v}" for k, v in settings.items())
    return "pipeline.upsamplers=[" + ",".join(f"{{ckpt_path:'{p}',sampler:{sampler}{extra}}}" for p in paths) + "]"


def _grid_rows(path) -> float:
    """The rows of a labelled grid PNG, from its height (``save_prompt_rows``: 1.25 in per row plus 0.3 in of
    title, at 100 dpi)."""
    with Image.open(path) as im:
        return (im.size[1] / 100 - 0.3) / 1.25


def test_prompts_give_one_labelled_row_each_and_samples_follow_seed_and_index(ckpts, tmp_path, capsys):
    prompts = ["a bold digit seven", "a thin digit one"]
    quoted = "prompts=[" + ",".join(f"'{p}'" for p in prompts) + "]"
    out = sample(_cfg(ckpts, quoted, "n=4", "batch_size=3", f"out={tmp_path / 'a'}"))
    printed = capsys.readouterr().out
    assert "grid: " + str(tmp_path / "a" / "grid.png") in printed and "nfe: {'prior': 3, 'decoder': 3}" in printed
    data = np.load(out["npz"])
    assert data["images"].shape == (4, 8, 8, 1) and data["images"].dtype == np.uint8
    assert list(data["text"]) == [prompts[i % 2] for i in range(4)] and data["z_i"].shape == (4, 64)
    assert out["prompts"] == prompts and out["prior"]["best_of"] == 2 and out["decoder"]["guidance"] == "cfg scale 2"
    # sample i depends on (seed, i) only: another batch size gives the same images
    again = np.load(sample(_cfg(ckpts, quoted, "n=4", "batch_size=4", f"out={tmp_path / 'b'}"))["npz"])
    np.testing.assert_array_equal(again["images"], data["images"])
    np.testing.assert_allclose(again["z_i"], data["z_i"], rtol=0, atol=1e-7)
    assert _grid_rows(out["grid"]) == pytest.approx(2)  # one row per prompt
    one = sample(_cfg(ckpts, "prompt='a bold digit seven'", "n=2", f"out={tmp_path / 'c'}"))
    single = np.load(one["npz"])
    assert list(single["text"]) == ["a bold digit seven"] * 2 and _grid_rows(one["grid"]) == pytest.approx(1)
    # sample 0 has the same caption in both runs: the same embedding; sample 1's caption differs, and so does it
    np.testing.assert_allclose(single["z_i"][0], data["z_i"][0], rtol=0, atol=1e-7)
    assert np.abs(single["z_i"][1] - data["z_i"][1]).max() > 1e-6  # (embeddings ~1e-2: unit CLIP vectors / 17.2)


def test_variations_of_png_and_npy_sources(ckpts, tmp_path):
    folder = tmp_path / "sources"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(folder / "a.png")
    np.save(folder / "b.npy", rng.integers(0, 256, (2, 8, 8, 1), dtype=np.uint8))  # a stack of two [H, W, C]
    (folder / "notes.txt").write_text("not an image: skipped\n")
    out = sample(_cfg(ckpts, f"variations={folder}", "n=6", "batch_size=4", f"out={tmp_path / 'v'}", prior=False))
    data = np.load(out["npz"])
    assert out["sources"] == ["a.png", "b.npy[0]", "b.npy[1]"] and "prior" not in out
    assert list(data["source"]) == [0, 1, 2, 0, 1, 2] and data["source_images"].shape == (3, 8, 8, 1)
    # a variation decodes its source's CLIP embedding
    np.testing.assert_allclose(data["z_i"][3], data["z_i"][0], atol=1e-6)
    assert not np.allclose(data["z_i"][0], data["z_i"][1])
    assert not np.array_equal(data["images"][0], data["images"][3])  # different noise, different variation
    single = sample(_cfg(ckpts, f"variations={folder / 'a.png'}", "n=3", f"out={tmp_path / 'w'}", prior=False))
    np.testing.assert_array_equal(np.load(single["npz"])["images"][0], data["images"][0])  # (seed, 0), source a.png
    assert _grid_rows(out["grid"]) == pytest.approx(3) and _grid_rows(single["grid"]) == pytest.approx(1)  # a row per source


def test_bad_input_is_one_line_naming_the_key(ckpts, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here\n")
    cases = [
        (_cfg(ckpts, "prompt=x", prior=False), "pipeline.prior.ckpt_path must be set"),
        (compose_config("sample", ["pipeline=unclip", "prompt=x"]), "pipeline.decoder.ckpt_path must be set"),
        (_cfg(ckpts, f"pipeline.decoder.ckpt_path={tmp_path / 'no.ckpt'}"), "pipeline.decoder.ckpt_path=.*no such file"),
        (_cfg(ckpts, f"pipeline.prior.ckpt_path={ckpts['plain']}"), "pipeline.prior.ckpt_path=.*holds a DiffusionModule"),
        (_cfg(ckpts, f"pipeline.prior.ckpt_path={ckpts['other_clip_prior']}"), "different CLIPs"),
        (_cfg(ckpts, "+pipeline.prior.steps=3"), "pipeline.prior.steps is not a prior setting"),
        (_cfg(ckpts, "pipeline.prior.best_of=0"), "pipeline.prior.best_of=0 must be a positive integer"),
        (_cfg(ckpts, "prompt=x", "variations=a.png"), "prompt and variations are two different uses"),
        (_cfg(ckpts, "prompt=x", "prompts=[y]"), "not both"),
        (_cfg(ckpts, "prompts=[]"), "prompts=.*non-empty list"),
        (_cfg(ckpts, "y=3"), "y=3 .*not class labels"),
        (_cfg(ckpts, f"variations={tmp_path / 'nothing.png'}", prior=False), "variations=.*no such file or folder"),
        (_cfg(ckpts, f"variations={empty}", prior=False), "variations=.*no .png or .npy files"),
        (compose_config("sample", [f"ckpt_path={ckpts['plain']}", "variations=a.png"]), "variations=a.png .*pipeline=unclip"),
        (compose_config("sample", ["pipeline=cdm_image_folder", "variations=a.png"]), "variations=a.png .*pipeline=unclip"),
        (_cfg(ckpts, "pipeline.kind=tree"), r"pipeline.kind='tree' is not one of \['cascade', 'unclip'\]"),
    ]
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(tmp_path / "big.png")
    np.save(tmp_path / "rgb.npy", np.zeros((8, 8, 3), np.float32))
    np.save(tmp_path / "wide.npy", np.full((8, 8), 3.0, np.float32))
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    cases += [
        (_cfg(ckpts, f"variations={tmp_path / 'big.png'}", prior=False), "variations=.*big.png: a 28×28 image, .* 8×8"),
        (_cfg(ckpts, f"variations={tmp_path / 'rgb.npy'}", prior=False), r"variations=.*rgb.npy: an array of shape \[8, 8, 3\]"),
        (_cfg(ckpts, f"variations={tmp_path / 'wide.npy'}", prior=False), r"variations=.*wide.npy: float values must lie in \[-1, 1\]"),
        (_cfg(ckpts, f"variations={tmp_path / 'x.jpg'}", prior=False), "variations=.*x.jpg: not a .png or .npy file"),
        (_cfg(ckpts, f"variations={tmp_path / 'big.png'}", "n=0", prior=False), "n and batch_size must be >= 1"),
    ]
    np.save(tmp_path / "three.npy", np.zeros((3, 8, 8), np.uint8))
    cases.append((_cfg(ckpts, f"variations={tmp_path / 'three.npy'}", "n=2", prior=False), "n=2 is below the 3 images"))
    for cfg, match in cases:
        with pytest.raises(ConfigError, match=match) as err:
            sample(cfg)
        assert "\n" not in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="diffzoo-eval pipeline=unclip is not available"):
        evaluate(compose_config("eval", ["pipeline=unclip"]))


def test_upsamplers_super_resolve_the_decoder_images_per_sample(ckpts, tmp_path, capsys):
    """An 8 → 16 upsampler after the decoder (§2.1): samples.npz and grid.png at 16×16, the decoder's 8×8 images kept in
    <out>/decoder/ and equal to a run without upsamplers, sample i the same whatever the batch size, no labels."""
    prompts = "prompts=['a bold digit seven','a thin digit one']"
    up = _upsamplers(ckpts["sr16"], aug_level=0.1)
    out = sample(_cfg(ckpts, prompts, up, "n=4", "batch_size=3", f"out={tmp_path / 'a'}"))
    printed = capsys.readouterr().out
    assert "nfe: {'prior': 3, 'decoder': 3, 'upsampler0': 3}" in printed
    data = np.load(out["npz"])
    assert data["images"].shape == (4, 16, 16, 1) and data["images"].dtype == np.uint8 and out["resolution"] == "16×16"
    assert list(data["text"]) == ["a bold digit seven", "a thin digit one"] * 2 and data["z_i"].shape == (4, 64)
    assert out["upsamplers"][0]["aug_level"] == pytest.approx(0.1) and out["upsamplers"][0]["text"] is False
    assert out["upsamplers"][0]["guidance"] is None and out["upsamplers"][0]["resolution"] == "16×16"
    decoder = np.load(out["stages"]["decoder"]["npz"])
    assert decoder["images"].shape == (4, 8, 8, 1) and Path(out["stages"]["decoder"]["grid"]).is_file()
    assert _grid_rows(out["grid"]) == pytest.approx(2)
    # the decoder's images do not depend on the upsamplers: a run without them draws the same
    plain = np.load(sample(_cfg(ckpts, prompts, "n=4", f"out={tmp_path / 'p'}"))["npz"])
    np.testing.assert_array_equal(decoder["images"], plain["images"])
    # sample i depends on (seed, i) only: batch size 1 gives the same 16×16 images, another seed others
    one = np.load(sample(_cfg(ckpts, prompts, up, "n=4", "batch_size=1", f"out={tmp_path / 'b'}"))["npz"])
    np.testing.assert_array_equal(one["images"], data["images"])
    other = np.load(sample(_cfg(ckpts, prompts, up, "n=4", "seed=1", f"out={tmp_path / 'c'}"))["npz"])
    assert not np.array_equal(other["images"], data["images"])
    # image variations go through the upsamplers too (here with a whole sampler: DDIM, as App. C samples them)
    up = _upsamplers(ckpts["sr16"], sampler="{name:ddim,steps:3}")
    src = tmp_path / "src.npy"
    np.save(src, np.random.default_rng(0).integers(0, 256, (2, 8, 8), dtype=np.uint8))
    var = sample(_cfg(ckpts, f"variations={src}", up, "n=4", "batch_size=3", f"out={tmp_path / 'v'}", prior=False))
    v = np.load(var["npz"])
    assert v["images"].shape == (4, 16, 16, 1) and v["source_images"].shape == (2, 8, 8, 1)
    assert list(v["source"]) == [0, 1, 0, 1] and np.load(var["stages"]["decoder"]["npz"])["images"].shape == (4, 8, 8, 1)
    assert var["upsamplers"][0]["sampler"]["name"] == "ddim" and out["upsamplers"][0]["sampler"]["name"] == "ddpm"
    v1 = np.load(sample(_cfg(ckpts, f"variations={src}", up, "n=4", "batch_size=1", f"out={tmp_path / 'w'}",
                             prior=False))["npz"])
    np.testing.assert_array_equal(v1["images"], v["images"])


def test_upsamplers_that_do_not_chain_are_refused_in_one_line(ckpts, tmp_path):
    sr16 = ckpts["sr16"]
    cases = [
        # entry 1 takes 8x8 inputs but entry 0 makes 16x16 images
        (_cfg(ckpts, "prompt=x", _upsamplers(sr16, sr16)),
         r"pipeline.upsamplers\[1\].ckpt_path takes 1x8x8 inputs but pipeline.upsamplers\[0\].ckpt_path makes 1x16x16 images"),
        (_cfg(ckpts, "prompt=x", _upsamplers(ckpts["plain"])),
         r"pipeline.upsamplers\[0\].ckpt_path holds a DiffusionModule; .*super-resolution"),
        (_cfg(ckpts, "prompt=x", _upsamplers(ckpts["sr16_classes"])),
         r"pipeline.upsamplers\[0\].ckpt_path=.* is a class-conditional .*unconditional \(§2.1\)"),
        (_cfg(ckpts, "prompt=x", _upsamplers(sr16, augmentation="truncated")),
         r"pipeline.upsamplers\[0\].augmentation is not a stage setting"),
        (_cfg(ckpts, "prompt=x", _upsamplers(sr16, aug_level=2)), r"pipeline.upsamplers\[0\].aug_level=2 must lie in \[0, 1\]"),
        (_cfg(ckpts, "prompt=x", "pipeline.upsamplers=[{sampler:{steps:3}}]"), r"pipeline.upsamplers\[0\].ckpt_path must be set"),
        (_cfg(ckpts, "prompt=x", f"pipeline.upsamplers={sr16}"), "pipeline.upsamplers must be a list"),
    ]
    for cfg, match in cases:
        with pytest.raises(ConfigError, match=match) as err:
            sample(cfg)
        assert "\n" not in str(err.value), str(err.value)


def test_the_real_main_with_argv(ckpts, tmp_path, capsys, monkeypatch):
    """Through ``diffzoo-sample``'s ``main``: Hydra's command-line parsing of prompts, and a bad input as one
    ``error:`` line with exit status 2 and no traceback."""
    from diffzoo.sample import main

    monkeypatch.chdir(tmp_path)
    args = ["diffzoo-sample", "pipeline=unclip", f"pipeline.prior.ckpt_path={ckpts['prior']}", "pipeline.prior.sampler.steps=2",
            f"pipeline.decoder.ckpt_path={ckpts['decoder']}", "pipeline.decoder.sampler.steps=2", "device=cpu", "n=2"]
    monkeypatch.setattr(sys, "argv", [*args, "prompts=[a bold digit seven,a thin digit one]", f"out={tmp_path / 'o'}"])
    main()
    assert list(np.load(tmp_path / "o" / "samples.npz")["text"]) == ["a bold digit seven", "a thin digit one"]
    assert "grid: " + str(tmp_path / "o" / "grid.png") in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["diffzoo-sample", "pipeline=unclip", "prompt=a bold digit seven"])
    with pytest.raises(SystemExit) as info:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: pipeline.decoder.ckpt_path must be set")


def test_every_pipeline_config_names_a_known_kind():
    """``pipeline.kind`` picks the runner: every shipped pipeline config names one that exists."""
    from diffzoo.config import CONFIG_DIR
    from diffzoo.pipelines.run import PIPELINE_KINDS

    names = sorted(p.stem for p in (Path(CONFIG_DIR) / "pipeline").glob("*.yaml"))
    assert "unclip" in names
    kinds = {name: compose_config("sample", [f"pipeline={name}"]).pipeline.get("kind") for name in names}
    assert all(kind in PIPELINE_KINDS for kind in kinds.values()), kinds
    assert kinds["unclip"] == "unclip" and kinds["cdm_fashion_mnist"] == "cascade"
