"""The paper-size text-to-image U-Nets, built on the meta device (no memory, no time): GLIDE's released
and paper base models and Imagen's 2B base, their parameter counts against the released code's and the
papers' numbers (papers/WAVE2.md §1.2, §3.2), and the text-width projection they use."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from diffzoo.errors import ConfigError
from diffzoo.networks import UNet
from tests.helpers import compose_config


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _build(net: str, text_encoder: str | None = None) -> tuple[int, int]:
    overrides = [f"net={net}"] + ([f"text_encoder={text_encoder}"] if text_encoder else [])
    cfg = compose_config("train", overrides)
    with torch.device("meta"):
        unet = instantiate(cfg.net)
        text = instantiate(cfg.text_encoder) if text_encoder else None
    return _count(unet), (_count(text) if text is not None else 0)


def test_glide_released_base_is_385_03m():
    # glide-text2im create_model_and_diffusion() on the meta device: 385.03M = 308.33M image + 76.70M text
    # (the text side counted with transformer_proj, 512 -> 4·192).
    unet, text = _build("glide_filtered_base64", "glide_transformer_released")
    proj = 512 * 4 * 192 + 4 * 192
    assert unet + text == 385_030_726
    assert round((unet - proj) / 1e6, 2) == 308.33 and round((text + proj) / 1e6, 2) == 76.70


def test_glide_paper_base_is_3_5b():
    # Nichol et al. 2021 §4.1: ≈3.5B = ≈2.3B visual + ≈1.2B text (24 blocks of width 2048); the text
    # side holds a 103M token embedding, so the rebuilt split is 2.24B + 1.32B (within 3 % of 3.5B).
    unet, text = _build("glide_paper_base64", "glide_transformer_paper")
    assert unet + text == 3_554_414_086
    assert abs((unet + text) / 3.5e9 - 1) < 0.03


def test_imagen_base_is_2b():
    # Saharia et al. 2022 App. F.1: "2B"; NeMo's 2b_res_64 (embed 512, cond 2048) has 2100M. The frozen
    # T5-XXL is not counted (as in the paper).
    unet, _ = _build("imagen_base64_2b")
    assert unet == 2_135_917_059
    assert abs(unet / 2e9 - 1) < 0.10 and abs(unet / 2.1e9 - 1) < 0.03


def test_text_encoder_dim_projects_states_to_text_dim():
    net = UNet(in_channels=1, out_channels=1, image_size=8, base_channels=16, channel_mult=(1, 2),
               num_res_blocks=1, attention_resolutions=(4,), num_groups=8, text_dim=8, text_encoder_dim=12)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3.0, 7.0])
    ctx, pooled = torch.randn(2, 5, 12), torch.randn(2, 12)
    out = net(x, t, context=ctx, pooled=pooled)
    assert out.shape == x.shape and net.text_in_proj.weight.shape == (8, 12)
    # the projection is what the attention blocks see: replacing it by the identity on the first 8
    # features is the same as feeding those features directly to a net without projection
    with torch.no_grad():
        net.text_in_proj.weight.zero_()
        net.text_in_proj.weight[:, :8] = torch.eye(8)
        net.text_in_proj.bias.zero_()
    plain = UNet(in_channels=1, out_channels=1, image_size=8, base_channels=16, channel_mult=(1, 2),
                 num_res_blocks=1, attention_resolutions=(4,), num_groups=8, text_dim=8)
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("text_in_proj")}
    plain.load_state_dict(own)
    net.eval(), plain.eval()
    torch.testing.assert_close(net(x, t, context=ctx, pooled=pooled), plain(x, t, context=ctx[..., :8], pooled=pooled[:, :8]))
    with pytest.raises(ConfigError, match="net.text_encoder_dim"):
        UNet(in_channels=1, out_channels=1, image_size=8, base_channels=16, channel_mult=(1, 2), num_groups=8,
             attention_resolutions=(4,), text_encoder_dim=12)
