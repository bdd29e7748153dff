"""Denoising networks: embeddings against their formulas, the U-Net against an independent
implementation of the DDPM architecture (diffusers' UNet2DModel), and the network contract."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import diffzoo
from diffzoo.networks import (
    AttentionBlock,
    GaussianFourierEmbedding,
    ResBlock,
    TimeMLP,
    UNet,
    sinusoidal_embedding,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
NET_CONF = Path(diffzoo.__file__).parent / "conf" / "net"
TINY = dict(in_channels=3, out_channels=3, image_size=16, base_channels=32, channel_mult=(1, 2, 2),
            num_res_blocks=1, attention_resolutions=(8,), dropout=0.0, num_groups=8)


def perturb_(net: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter so that zero-initialised layers no longer hide the input."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn_like(p))
    return net


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- embeddings


def test_sinusoidal_embedding_formula():
    # dim 6: half = 3, ω_i = 10000^(−i/2) = 1, 1e-2, 1e-4; emb = [sin(tω), cos(tω)].
    t = torch.tensor([0.0, 1.0, 500.0])
    omega = torch.tensor([1.0, 1e-2, 1e-4])
    expected = torch.cat([torch.sin(t[:, None] * omega), torch.cos(t[:, None] * omega)], dim=1)
    torch.testing.assert_close(sinusoidal_embedding(t, 6), expected)
    odd = sinusoidal_embedding(t, 7)
    torch.testing.assert_close(odd[:, :6], expected)
    assert torch.equal(odd[:, 6], torch.zeros(3))


def test_sinusoidal_embedding_is_float32_under_autocast():
    t = torch.tensor([3.0, 999.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = sinusoidal_embedding(t, 64)
    assert emb.dtype == torch.float32
    torch.testing.assert_close(emb, sinusoidal_embedding(t, 64), rtol=0, atol=0)
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(t, 2)


def test_gaussian_fourier_embedding():
    torch.manual_seed(0)
    emb = GaussianFourierEmbedding(4096, scale=16.0)
    assert "freqs" in emb.state_dict() and not list(emb.parameters())  # fixed, but checkpointed
    assert abs(emb.freqs.std().item() / 16.0 - 1) < 0.05  # W ~ N(0, 16²)
    t = torch.tensor([0.0, 0.3, -1.7])
    args = 2 * math.pi * t[:, None] * emb.freqs[None]
    torch.testing.assert_close(emb(t), torch.cat([torch.sin(args), torch.cos(args)], dim=1))


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "name, shape",
    [("ddpm_cifar10", (1, 3, 32, 32)), ("unet_digits", (4, 1, 8, 8)),
     ("unet_fashion_mnist", (2, 1, 28, 28)), ("mlp_toy2d", (5, 2))],
)
def test_config_instantiates_and_maps_shapes(name, shape):
    net = instantiate(OmegaConf.load(NET_CONF / f"{name}.yaml"))
    assert net.in_channels == shape[1] and net.out_channels == shape[1]
    if len(shape) == 4:
        assert net.image_size == shape[-1]
    x = torch.randn(shape)
    t = torch.randint(0, 1000, (shape[0],)).float()
    with torch.no_grad():
        assert perturb_(net)(x, t).shape == shape


def test_ddpm_cifar10_has_the_papers_parameter_count():
    net = instantiate(OmegaConf.load(NET_CONF / "ddpm_cifar10.yaml"))
    assert round(n_params(net) / 1e6, 1) == 35.7  # Ho et al. 2020, App. B


# ----------------------------------------------------------------------------- against diffusers


def diffusers_ddpm_unet(image_size, base_channels, channel_mult, num_res_blocks, attention_level, num_groups):
    """diffusers' port of the DDPM U-Net (the google/ddpm-cifar10-32 configuration)."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
    levels = range(len(channel_mult))
    down = tuple("AttnDownBlock2D" if i == attention_level else "DownBlock2D" for i in levels)
    up = tuple("AttnUpBlock2D" if i == attention_level else "UpBlock2D" for i in reversed(levels))
    return diffusers.UNet2DModel(
        sample_size=image_size, in_channels=3, out_channels=3,
        block_out_channels=tuple(base_channels * m for m in channel_mult),
        layers_per_block=num_res_blocks, down_block_types=down, up_block_types=up,
        attention_head_dim=None, norm_num_groups=num_groups, norm_eps=1e-6, downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, dropout=0.0,
    )


def test_ddpm_cifar10_parameter_count_equals_diffusers_port():
    ref = diffusers_ddpm_unet(32, 128, (1, 2, 2, 2), 2, attention_level=1, num_groups=32)
    net = instantiate(OmegaConf.load(NET_CONF / "ddpm_cifar10.yaml"))
    assert n_params(net) == n_params(ref)


@torch.no_grad()
def copy_from_diffusers(net: UNet, ref) -> None:
    """Load diffusers UNet2DModel weights into ``net``, module by module in forward order."""

    def copy(dst, src):
        dst.weight.copy_(src.weight.reshape(dst.weight.shape))
        dst.bias.copy_(src.bias)

    def copy_block(dst, src):
        if isinstance(dst, ResBlock):
            for a, b in [("norm1", "norm1"), ("conv1", "conv1"), ("emb_proj", "time_emb_proj"),
                         ("norm2", "norm2"), ("conv2", "conv2")]:
                copy(getattr(dst, a), getattr(src, b))
            if src.conv_shortcut is not None:
                copy(dst.skip, src.conv_shortcut)
        elif isinstance(dst, AttentionBlock):
            copy(dst.norm, src.group_norm)
            q, k, v = src.to_q, src.to_k, src.to_v
            dst.qkv.weight.copy_(torch.cat([q.weight, k.weight, v.weight])[..., None, None])
            dst.qkv.bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
            copy(dst.proj_out, src.to_out[0])
        else:  # Downsample / Upsample
            copy(dst.conv, src.conv)

    theirs = []
    for block in ref.down_blocks:
        for i, res in enumerate(block.resnets):
            theirs += [res] + ([block.attentions[i]] if hasattr(block, "attentions") else [])
        theirs += list(block.downsamplers or [])
    theirs += [ref.mid_block.resnets[0], ref.mid_block.attentions[0], ref.mid_block.resnets[1]]
    for block in ref.up_blocks:
        for i, res in enumerate(block.resnets):
            theirs += [res] + ([block.attentions[i]] if hasattr(block, "attentions") else [])
        theirs += list(block.upsamplers or [])
    ours = [layer for stage in [*net.down, net.mid, *net.up] for layer in stage]
    assert len(ours) == len(theirs)
    for dst, src in zip(ours, theirs):
        copy_block(dst, src)
    copy(net.time_mlp[0], ref.time_embedding.linear_1)
    copy(net.time_mlp[2], ref.time_embedding.linear_2)
    copy(net.input_conv, ref.conv_in)
    copy(net.out[0], ref.conv_norm_out)
    copy(net.out[2], ref.conv_out)


def test_unet_computes_the_same_function_as_diffusers_ddpm_port():
    torch.manual_seed(0)
    ref = perturb_(diffusers_ddpm_unet(16, 32, (1, 2, 2), 1, attention_level=1, num_groups=8).eval())
    net = UNet(**TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float("nan"))
    copy_from_diffusers(net, ref)
    assert not any(p.isnan().any() for p in net.parameters())  # every weight came from the reference
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([0.0, 17.0, 999.0])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t), ref(x, t).sample, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- blocks


def test_attention_block_is_multihead_softmax_attention_via_sdpa(monkeypatch):
    torch.manual_seed(0)
    block = perturb_(AttentionBlock(32, num_heads=4, num_groups=8))
    x = torch.randn(2, 32, 4, 4)
    # softmax(QKᵀ/√d)V per head (Vaswani et al. 2017, eq. 1), d = 32 / 4.
    q, k, v = block.qkv_heads(x)
    w = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(8), dim=-1)
    h = torch.einsum("bhij,bhjd->bhid", w, v).transpose(-1, -2).reshape(2, 32, 4, 4)
    expected = x + block.proj_out(h)

    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append(1) or sdpa(*a, **kw))
    torch.testing.assert_close(block(x), expected)
    assert calls == [1]


def test_scale_shift_resblock_is_adagn():
    torch.manual_seed(0)
    block = perturb_(ResBlock(16, 16, 8, num_groups=4, scale_shift=True)).eval()
    with torch.no_grad():  # GroupNorm without its own affine, as in the paper's formula
        block.norm2.weight.fill_(1.0)
        block.norm2.bias.fill_(0.0)
    x, emb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    silu = torch.nn.functional.silu
    # ADM §3: AdaGN(h, e) = (1 + y_s)·GroupNorm(h) + y_b with [y_s, y_b] = Linear(SiLU(e)).
    h = block.conv1(silu(block.norm1(x)))
    scale, shift = block.emb_proj(silu(emb))[:, :, None, None].chunk(2, dim=1)
    h = torch.nn.functional.group_norm(h, 4, eps=1e-6) * (1 + scale) + shift
    torch.testing.assert_close(block(x, emb), x + block.conv2(silu(h)))


def test_fresh_unet_outputs_zero_as_in_ddpm_init():
    # DDPM zero-initialises (init_scale=0) the output conv, so the untrained net predicts 0.
    out = UNet(**TINY)(torch.randn(2, 3, 16, 16), torch.tensor([1.0, 2.0]))
    assert torch.equal(out, torch.zeros_like(out))


# ----------------------------------------------------------------------------- UNet contract


def test_unet_adm_options_and_output_channels():
    torch.manual_seed(0)
    net = perturb_(UNet(**{**TINY, "out_channels": 6}, num_head_channels=16, use_scale_shift_norm=True,
                        resblock_updown=True))
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.tensor([5.0, 900.0]))
    assert out.shape == (2, 6, 16, 16)
    assert net.mid[1].num_heads == 64 // 16


def test_class_conditioning_and_null_class():
    torch.manual_seed(0)
    net = perturb_(UNet(**TINY, num_classes=10)).eval()
    assert net.null_class == 10 and net.class_embed.num_embeddings == 11
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10.0, 10.0])
    with torch.no_grad():
        y3, y7 = net(x, t, torch.tensor([3, 3])), net(x, t, torch.tensor([7, 7]))
        assert not torch.allclose(y3, y7)
        torch.testing.assert_close(net(x, t), net(x, t, torch.tensor([10, 10])))  # y=None → null
        torch.testing.assert_close(net(x, t.new_tensor(10.0)), net(x, t))  # scalar t broadcasts
    with pytest.raises(ValueError, match="num_classes=None"):
        UNet(**TINY)(x, t, torch.tensor([1, 2]))


def test_gradient_checkpointing_gives_identical_gradients(monkeypatch):
    import diffzoo.networks.unet as unet_module

    calls = []
    original = unet_module.checkpoint
    monkeypatch.setattr(unet_module, "checkpoint", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    torch.manual_seed(0)
    plain = perturb_(UNet(**{**TINY, "dropout": 0.3}))
    ckpt = UNet(**{**TINY, "dropout": 0.3}, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3.0, 400.0])
    grads = []
    for net in (plain, ckpt):
        torch.manual_seed(1)  # same dropout masks
        net(x, t).square().mean().backward()
        grads.append([p.grad for p in net.parameters()])
    assert len(calls) == len(ckpt.down) + 1 + len(ckpt.up)  # every stage was checkpointed
    for g_plain, g_ckpt in zip(*grads):
        torch.testing.assert_close(g_ckpt, g_plain, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "override, key",
    [(dict(attention_resolutions=(3,)), "attention_resolutions"),
     (dict(num_groups=12), "num_groups"),
     (dict(image_size=18), "image_size"),
     (dict(num_head_channels=24), "num_head_channels"),
     (dict(num_heads=3), "num_heads"),
     (dict(channel_mult=()), "channel_mult"),
     (dict(dropout=1.0), "dropout")],
)
def test_bad_unet_arguments_name_the_argument(override, key):
    with pytest.raises(ValueError, match=key):
        UNet(**{**TINY, **override})


def test_bad_unet_inputs_give_clear_errors():
    net = UNet(**TINY)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 3, H, W\]"):
        net(torch.randn(2, 1, 16, 16), torch.zeros(2))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(2, 3, 18, 18), torch.zeros(2))
    with pytest.raises(ValueError, match=r"t must have shape \[2\]"):
        net(torch.randn(2, 3, 16, 16), torch.zeros(3))


# ----------------------------------------------------------------------------- TimeMLP


def test_time_mlp_contract():
    torch.manual_seed(0)
    net = TimeMLP(dim=2, hidden=32, depth=3, time_embed_dim=16, out_dim=4, num_classes=3)
    assert (net.in_channels, net.out_channels, net.null_class) == (2, 4, 3)
    x, t = torch.randn(5, 2), torch.rand(5) * 999
    out = net(x, t)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, net(x, t, torch.full((5,), 3)))  # y=None → null class
    assert not torch.allclose(net(x, t, torch.zeros(5, dtype=torch.long)), out)
    assert not torch.allclose(net(x, t + 1.0), out)  # depends on t
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2\]"):
        net(torch.randn(5, 3), t)
    with pytest.raises(ValueError, match="num_classes=None"):
        TimeMLP()(x, t, torch.zeros(5, dtype=torch.long))
