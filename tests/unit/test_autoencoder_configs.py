"""The paper-size first-stage configs (CompVis/latent-diffusion models/first_stage_models/*/config.yaml)
hold the official layout, and their parameter counts — built on the meta device — equal the count
computed by hand from that layout below. The same numbers come out of diffusers' AutoencoderKL /
VQModel built with the same layout (diffusers 0.42.1), and kl-f8's 83,653,863 is the size of Stable
Diffusion's VAE, which has kl-f8's layout."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffzoo.config import CONFIG_DIR

OFFICIAL = {  # name: (kind, ch_mult, attn_resolutions, z_channels, embed_dim, n_embed, parameters)
    "ae_kl_f4": ("kl", (1, 2, 4), (), 3, 3, None, 55_312_063),
    "ae_kl_f8": ("kl", (1, 2, 4, 4), (), 4, 4, None, 83_653_863),
    "ae_vq_f4": ("vq", (1, 2, 4), (), 3, 3, 8192, 55_322_782),
    "ae_vq_f8": ("vq", (1, 2, 2, 4), (32,), 4, 4, 16384, 67_717_295),
}


def _conv(cin, cout, k):
    return cin * cout * k * k + cout


def _res(cin, cout):  # GroupNorm, conv3x3, GroupNorm, conv3x3 (+ 1x1 shortcut)
    return 2 * cin + _conv(cin, cout, 3) + 2 * cout + _conv(cout, cout, 3) + (_conv(cin, cout, 1) if cin != cout else 0)


def _attn(c):  # GroupNorm + q, k, v, proj_out 1x1 convs
    return 2 * c + 4 * _conv(c, c, 1)


def hand_count(kind, ch_mult, attn, z, e, n_embed, ch=128, nrb=2, res=256, cin=3, cout=3):
    n, block_in, r = _conv(cin, ch, 3), ch, res
    for i, m in enumerate(ch_mult):            # encoder levels
        for _ in range(nrb):
            n += _res(block_in, ch * m) + (_attn(ch * m) if r in attn else 0)
            block_in = ch * m
        if i < len(ch_mult) - 1:
            n += _conv(block_in, block_in, 3)
            r //= 2
    n += 2 * _res(block_in, block_in) + _attn(block_in) + 2 * block_in + _conv(block_in, 2 * z if kind == "kl" else z, 3)
    block_in = ch * ch_mult[-1]                 # decoder
    n += _conv(z, block_in, 3) + 2 * _res(block_in, block_in) + _attn(block_in)
    for i in reversed(range(len(ch_mult))):
        for _ in range(nrb + 1):
            n += _res(block_in, ch * ch_mult[i]) + (_attn(ch * ch_mult[i]) if r in attn else 0)
            block_in = ch * ch_mult[i]
        if i > 0:
            n += _conv(block_in, block_in, 3)
            r *= 2
    n += 2 * block_in + _conv(block_in, cout, 3)
    if kind == "kl":
        return n + _conv(2 * z, 2 * e, 1) + _conv(e, z, 1)
    return n + _conv(z, e, 1) + _conv(e, z, 1) + n_embed * e


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_paper_size_first_stage_config_and_parameter_count(name):
    kind, ch_mult, attn, z, e, n_embed, count = OFFICIAL[name]
    cfg = OmegaConf.load(f"{CONFIG_DIR}/net/{name}.yaml")
    assert (cfg.ch, tuple(cfg.ch_mult), cfg.num_res_blocks, tuple(cfg.attn_resolutions), cfg.z_channels, cfg.embed_dim,
            cfg.resolution, cfg.in_channels) == (128, ch_mult, 2, attn, z, e, 256, 3)
    assert cfg.get("n_embed") == n_embed
    with torch.device("meta"):
        net = instantiate(cfg)
    assert net.kind == kind and net.downsampling_factor == 2 ** (len(ch_mult) - 1)
    assert sum(p.numel() for p in net.parameters()) == hand_count(kind, ch_mult, attn, z, e, n_embed) == count


def test_first_stage_loss_configs_hold_the_official_values():
    kl = OmegaConf.load(f"{CONFIG_DIR}/objective/ae_kl.yaml")
    assert (kl.disc_start, kl.kl_weight, kl.disc_weight, kl.disc_num_layers, kl.logvar_init) == (50001, 1e-6, 0.5, 3, 0.0)
    vq = OmegaConf.load(f"{CONFIG_DIR}/objective/ae_vq.yaml")
    assert (vq.disc_start, vq.disc_weight, vq.codebook_weight, vq.disc_num_layers) == (0, 0.75, 1.0, 3)
