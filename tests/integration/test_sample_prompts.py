"""``diffzoo-sample prompt=… / prompts=[…]`` on a text model: the samples follow their prompts (each
sample is the same as drawing it with that caption directly), the grid has one row per prompt, the
npz records the captions, and a prompt for a model without text is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffzoo.config import compose_config, register_resolvers
from diffzoo.errors import ConfigError
from diffzoo.lit import build_module
from diffzoo.sample import sample
from diffzoo.samplers import sample_indices
from diffzoo.utils.images import to_uint8


def _save(module, path, shape=(1, 8, 8)):
    torch.save({"state_dict": module.state_dict(), "diffzoo": {"config": module.run_config, "data_shape": list(shape)}}, path)
    return path


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory):
    register_resolvers()
    m = build_module(compose_config("train", ["experiment=text_digits", "sampler=ddim", "sampler.steps=4"]), (1, 8, 8))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random weights everywhere, so the caption changes the output
        for p in list(m.ema.shadow.parameters()) + list(m.text_ema.shadow.parameters()):
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return _save(m, tmp_path_factory.mktemp("text") / "text.ckpt"), m


def _cfg(ckpt, *overrides):
    return compose_config("sample", [f"ckpt_path={ckpt}", "n=4", "batch_size=3", *overrides])


def test_prompts_give_one_row_each_and_match_direct_sampling(text_ckpt, tmp_path):
    ckpt, module = text_ckpt
    prompts = ["a bold digit seven", "a thin digit one"]
    out = sample(_cfg(ckpt, f"out={tmp_path}", "prompts=[" + ",".join(f"'{p}'" for p in prompts) + "]"))
    data = np.load(out["npz"])
    assert list(data["text"]) == [prompts[i % 2] for i in range(4)]
    assert (tmp_path / "grid.png").stat().st_size > 0
    module.eval()
    den = module.denoiser(True)
    want = sample_indices(den, module.sampler, [1], 0, (1, 8, 8), cond={"text": [prompts[1]]}).x
    got = torch.from_numpy(data["images"][1]).permute(2, 0, 1)
    assert torch.equal(got, to_uint8(want)[0])  # sample 1 is the second prompt's, seeded by (seed, 1)
    x, t = torch.randn(1, 1, 8, 8), torch.tensor([500.0])
    with torch.no_grad():  # and the caption matters to the model
        assert not torch.equal(den.predict(x, t, text=prompts[0]).eps, den.predict(x, t, text=prompts[1]).eps)


def test_prompt_errors_are_one_line(text_ckpt, tmp_path):
    ckpt, _ = text_ckpt
    with pytest.raises(ConfigError, match="not both"):
        sample(_cfg(ckpt, "prompt=x", "prompts=[y]"))
    with pytest.raises(ConfigError, match="non-empty list"):
        sample(_cfg(ckpt, "prompts=[]"))
    register_resolvers()
    plain = build_module(compose_config("train", ["experiment=ddpm_digits"]), (1, 8, 8))
    path = _save(plain, tmp_path / "plain.ckpt")
    with pytest.raises(ConfigError, match="takes no text"):
        sample(_cfg(path, "prompt='a bold digit seven'"))


def test_cfg_on_a_text_model_takes_prompts_not_labels(text_ckpt, tmp_path):
    ckpt, _ = text_ckpt
    out = sample(_cfg(ckpt, f"out={tmp_path}", "prompt='a bold digit seven'", "guidance=cfg", "guidance.scale=2"))
    assert "y" not in np.load(out["npz"]).files and out["guidance"] == "cfg"
    with pytest.raises(ConfigError, match="takes no class labels"):
        sample(_cfg(ckpt, "y=3"))


def test_clip_guidance_from_the_command_line(text_ckpt, tmp_path):
    register_resolvers()
    clip = build_module(compose_config("train", ["experiment=noised_clip_captioned_digits"]), (1, 8, 8))
    clip_path = _save(clip, tmp_path / "clip.ckpt")
    ckpt, _ = text_ckpt
    out = sample(_cfg(ckpt, f"out={tmp_path / 's'}", "prompt='a bold digit seven'", "guidance=clip", f"guidance.clip_ckpt={clip_path}",
                      "guidance.scale=2", "sampler=ddpm", "sampler.steps=3"))
    assert out["guidance"] == "clip" and np.load(out["npz"])["images"].shape == (4, 8, 8, 1)
    with pytest.raises(ConfigError, match="give prompt"):
        sample(_cfg(ckpt, "guidance=clip", f"guidance.clip_ckpt={clip_path}", "sampler=ddpm"))
    with pytest.raises(ConfigError, match="guidance.clip_ckpt must be set"):
        sample(_cfg(ckpt, "prompt=x", "guidance=clip"))
    plain = build_module(compose_config("train", ["experiment=clip_captioned_digits"]), (1, 8, 8))
    with pytest.raises(Exception, match="not a noised CLIP"):
        sample(_cfg(ckpt, "prompt=x", "guidance=clip", f"guidance.clip_ckpt={_save(plain, tmp_path / 'plain.ckpt')}"))
