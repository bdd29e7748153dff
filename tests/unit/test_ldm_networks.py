"""LDM's conditioning U-Net (SpatialTransformer, ClassEmbedder) and text Transformer, and the paper-size configs
counted on the meta device against the official CompVis modules.

The reference counts were taken by building CompVis/latent-diffusion (a506df5) ``UNetModel`` with each
``configs/latent-diffusion/*.yaml``'s ``unet_config`` and ``TransformerWrapper(Encoder(1280, 32))`` on the meta
device: celebahq-ldm-vq-4 274,056,163 · lsun_churches-ldm-kl-8 294,966,916 · cin-ldm-vq-f8 394,984,196 (+ ClassEmbedder
1000·512) · txt2img-1p4B 872,300,484 + 581,994,042 (text encoder with its unused vocabulary head) = 1,454,294,526.
The paper (Table E.2 / Table 2) rounds these to 274M, 294M, 395M and 1.45B."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffzoo.config import CONFIG_DIR
from diffzoo.errors import ConfigError
from diffzoo.networks.spatial_transformer import LDMUNet, SpatialTransformer
from diffzoo.networks.text.ldm_transformer import LDMTextTransformer


def _count(group: str, name: str) -> int:
    cfg = OmegaConf.load(f"{CONFIG_DIR}/{group}/{name}.yaml")
    with torch.device("meta"):
        return sum(p.numel() for p in instantiate(cfg).parameters())


@pytest.mark.parametrize("name, official, paper_m", [
    ("ldm_celebahq_vq4", 274_056_163, 274),
    ("ldm_churches_kl8", 294_966_916, 294),
    ("ldm_cin_vq8", 394_984_196 + 1000 * 512 + 512, 395),  # + ClassEmbedder + one null-class row (CFG)
    ("ldm_txt2img_1p4b", 872_300_484, None),
])
def test_paper_unet_counts(name, official, paper_m):
    n = _count("net", name)
    assert n == official
    if paper_m is not None:
        assert int(n / 1e6) == paper_m  # Table E.2 truncates (294.97M is "294M")


def test_txt2img_with_its_text_encoder_is_1_45B():
    d, vocab, depth = 1280, 30522, 32
    # the x-transformers layer in closed form: 2 LayerNorms, q/k/v (d → 8·64, no bias), out (512 → d), GELU FF 4d
    inner = 8 * 64
    layer = 2 * 2 * d + 3 * d * inner + inner * d + d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    encoder = vocab * d + 77 * d + depth * layer + 2 * d
    assert _count("text_encoder", "ldm_bert_1p4b") == encoder == 542_895_360
    unused_head = d * vocab + vocab  # TransformerWrapper.to_logits, built but never called by LDM
    total = _count("net", "ldm_txt2img_1p4b") + encoder + unused_head
    assert total == 1_454_294_526 and round(total / 1e9, 2) == 1.45


def test_spatial_transformer_starts_as_identity_and_uses_the_context():
    torch.manual_seed(0)
    block = SpatialTransformer(16, heads=2, d_head=8, depth=1, context_dim=6, num_groups=4)
    x, ctx = torch.randn(2, 16, 4, 4), torch.randn(2, 3, 6)
    assert torch.equal(block(x, ctx), x)  # proj_out starts at zero (CompVis zero_module)
    torch.nn.init.normal_(block.proj_out.weight)
    a, b = block(x, ctx), block(x, torch.randn(2, 3, 6))
    assert not torch.allclose(a, b)
    # a masked context position has no influence
    mask = torch.tensor([[True, True, False]] * 2)
    ctx2 = ctx.clone()
    ctx2[:, 2] = 100.0
    assert torch.allclose(block(x, ctx, mask), block(x, ctx2, mask), atol=1e-5)
    # parameters: GN 2C, proj_in C·C'+C', block (3 LN, attn1 4C'^2+C', attn2 C'^2 + 2·6·C' + C'^2 + C', GEGLU, FF), proj_out
    c = 16
    expect = 2 * c + (c * c + c) + 3 * 2 * c + (4 * c * c + c) + (2 * c * c + 2 * 6 * c + c) + (c * 8 * c + 8 * c) + (4 * c * c + c) + (c * c + c)
    assert sum(p.numel() for p in block.parameters()) == expect


def _small(**kw) -> LDMUNet:
    return LDMUNet(in_channels=3, out_channels=3, image_size=8, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                   attention_resolutions=(4,), num_head_channels=8, num_groups=8, dropout=0.0, context_dim=12, **kw)


def test_ldm_unet_class_embedder_is_a_one_token_context():
    torch.manual_seed(0)
    net = _small(num_classes=5)
    for m in net.modules():  # leave the zero init so the labels reach the output
        if isinstance(m, SpatialTransformer):
            torch.nn.init.normal_(m.proj_out.weight, std=0.1)
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    assert net.null_class == 5 and net.text_dim is None
    assert sum(isinstance(m, SpatialTransformer) for m in net.modules()) == 4  # level 4 (down 1, up 2) + middle
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3.0, 500.0])
    a, b = net(x, t, y=torch.tensor([0, 1])), net(x, t, y=torch.tensor([2, 3]))
    assert a.shape == x.shape and not torch.allclose(a, b)
    assert torch.equal(net(x, t), net(x, t, y=torch.tensor([5, 5])))  # no label = the null class
    with pytest.raises(ValueError, match="not a context"):
        net(x, t, context=torch.randn(2, 1, 12))


def test_ldm_unet_text_context_and_config_errors():
    net = _small()
    assert net.text_dim == net.text_encoder_dim == 12
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1.0, 2.0])
    out = net(x, t, context=torch.randn(2, 5, 12), pooled=torch.randn(2, 12))
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="num_classes=None"):
        net(x, t, y=torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="net.text_dim"):
        _small(text_dim=12)


def test_ldm_text_transformer_shapes():
    enc = LDMTextTransformer(vocab_size=20, context_length=6, width=16, layers=2, heads=2, dim_head=8)
    tokens = torch.tensor([[3, 4, 5, 0, 0, 0], [7, 0, 0, 0, 0, 0]])
    e = enc.encode_tokens(tokens)
    assert e.states.shape == (2, 6, 16) and e.pooled.shape == (2, 16)
    assert e.mask.tolist()[1] == [True, False, False, False, False, False]
