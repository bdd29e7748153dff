"""ADM's U-Nets and classifier at paper size: the configs hold the official architectures.

Published sizes: ImageNet 64 ≈ 296M and 256 ≈ 554M parameters (Karras et al. 2022, Table 2 lists
ADM 64 at 296M; ADM-G 256 = 608M with its 54M classifier, Rombach et al. 2022, Table 3). The exact
counts are derived here independently of :class:`UNet` from the official architecture
(guided-diffusion ``UNetModel`` / ``EncoderUNetModel``), layer by layer; diffzoo's conditional nets
have one more embedding row, the learned null class of classifier-free guidance (4·width values).
Built on the meta device: no memory, no time.
"""

import pytest
import torch
from hydra.utils import instantiate

from diffzoo.config import compose_config


def _net(name):
    cfg = compose_config(config_name="train", overrides=[f"net={name}"])
    with torch.device("meta"):
        return instantiate(cfg.net)


def _conv(ci, co, k):
    return ci * co * k * k + co


def _lin(i, o):
    return i * o + o


def _res(ci, co, emb):  # GN(ci), conv3(ci→co), Linear(emb→2co) (AdaGN), GN(co), conv3(co→co), 1x1 skip if ci≠co
    return 2 * ci + _conv(ci, co, 3) + _lin(emb, 2 * co) + 2 * co + _conv(co, co, 3) + (0 if ci == co else _conv(ci, co, 1))


def _attn(c):  # GN, qkv 1x1 (c→3c), proj 1x1 (c→c)
    return 2 * c + _conv(c, 3 * c, 1) + _conv(c, c, 1)


def _encoder(ch, mult, nres, attn, size, emb):
    """conv_in + ADM input_blocks + middle block; returns (params, skip widths, width, resolution)."""
    total, skips, c, res = _conv(3, ch, 3), [ch], ch, size
    for level, m in enumerate(mult):
        for _ in range(nres):
            total += _res(c, ch * m, emb) + (_attn(ch * m) if res in attn else 0)
            c = ch * m
            skips.append(c)
        if level < len(mult) - 1:
            total += _res(c, c, emb)  # resblock_updown: a "down" ResBlock
            skips.append(c)
            res //= 2
    total += _res(c, c, emb) + _attn(c) + _res(c, c, emb)
    return total, skips, c, res


def adm_unet_params(ch, mult, nres, size, attn=(32, 16, 8), out=6, classes=1000):
    emb = 4 * ch
    total, skips, c, res = _encoder(ch, mult, nres, attn, size, emb)
    total += _lin(ch, emb) + _lin(emb, emb) + classes * emb  # time MLP, class embedding
    for level, m in reversed(list(enumerate(mult))):
        for i in range(nres + 1):
            total += _res(c + skips.pop(), ch * m, emb) + (_attn(ch * m) if res in attn else 0)
            c = ch * m
            if level and i == nres:
                total += _res(c, c, emb)  # an "up" ResBlock
                res *= 2
    return total + 2 * c + _conv(c, out, 3)


def adm_classifier_params(ch, mult, nres, size, attn=(32, 16, 8), classes=1000, head_ch=64):
    emb = 4 * ch
    total, _, c, res = _encoder(ch, mult, nres, attn, size, emb)
    pool = c * (res * res + 1) + _conv(c, 3 * c, 1) + _conv(c, classes, 1)  # positional emb, qkv, c_proj
    return total + _lin(ch, emb) + _lin(emb, emb) + 2 * c + pool


@pytest.mark.parametrize("name,official,published", [
    ("adm_imagenet64", adm_unet_params(192, (1, 2, 3, 4), 3, 64), 296e6),
    ("adm_imagenet128", adm_unet_params(256, (1, 1, 2, 3, 4), 2, 128), None),
    ("adm_imagenet256", adm_unet_params(256, (1, 1, 2, 2, 4, 4), 2, 256), 554e6),
])
def test_adm_unet_parameter_counts(name, official, published):
    net = _net(name)
    count = sum(p.numel() for p in net.parameters())
    null_row = 4 * net.base_channels
    assert count - null_row == official
    assert count == {"adm_imagenet64": 295_905_222, "adm_imagenet128": 421_530_630, "adm_imagenet256": 553_839_110}[name]
    if published:
        assert round(official / 1e6) == published / 1e6
    assert net.out_channels == 6 and net.num_classes == 1000  # learned Σ; class-conditional


@pytest.mark.parametrize("name,official,published", [
    ("adm_classifier_imagenet128", adm_classifier_params(128, (1, 1, 2, 3, 4), 2, 128), None),
    ("adm_classifier_imagenet64", adm_classifier_params(128, (1, 2, 3, 4), 4, 64), None),
])
def test_adm_classifier_parameter_counts(name, official, published):
    net = _net(name)
    assert sum(p.numel() for p in net.parameters()) == official
    # the 256 classifier of the same family (mult (1,1,2,2,4,4)) is the published 54M of ADM-G 256
    assert round(adm_classifier_params(128, (1, 1, 2, 2, 4, 4), 2, 256) / 1e6) == 54


def test_small_adm_net_runs_forward_with_classes():
    from diffzoo.networks import UNet

    net = UNet(3, 6, 32, 32, (1, 2), 1, (16,), 0.0, num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True,
               num_classes=5)
    out = net(torch.randn(2, 3, 32, 32), torch.tensor([1.0, 500.0]), torch.tensor([0, 5]))  # 5 = the null class
    assert out.shape == (2, 6, 32, 32)
