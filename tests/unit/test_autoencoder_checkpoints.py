"""State-dict layouts of the first-stage autoencoders: CompVis checkpoints load by name, and diffusers'
AutoencoderKL / VQModel give the same outputs as diffzoo's networks on random weights after renaming."""

import pytest
import torch

from diffzoo.errors import CheckpointError
from diffzoo.networks.autoencoder import AutoencoderKL, VQModel
from diffzoo.networks.autoencoder_checkpoints import (diffusers_config, diffusers_key_map, from_compvis, from_diffusers,
                                                      load_autoencoder_state, to_diffusers)

TINY = dict(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, resolution=16, in_channels=3, norm_groups=4)


def _randomise(net):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():  # GroupNorm affine too, so a swapped scale / shift would show
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def _kl(**kw):
    torch.manual_seed(0)
    return _randomise(AutoencoderKL(z_channels=4, embed_dim=4, attn_resolutions=[8], **{**TINY, **kw}))


def _vq(**kw):
    torch.manual_seed(0)
    return _randomise(VQModel(z_channels=3, embed_dim=5, n_embed=32, attn_resolutions=[4], **{**TINY, **kw}))


def test_compvis_keys_load_by_name_from_an_autoencoder_or_an_ldm_checkpoint():
    net = _kl()
    ours = net.state_dict()
    ldm_ckpt = {**{f"first_stage_model.{k}": v for k, v in ours.items()},
                "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1), "first_stage_model.loss.logvar": torch.zeros(())}
    ae_ckpt = {**ours, "loss.discriminator.main.0.weight": torch.zeros(1)}
    for ckpt in (ldm_ckpt, ae_ckpt):
        got = from_compvis(ckpt)
        assert got.keys() == ours.keys() and all(torch.equal(got[k], ours[k]) for k in ours)
    assert "encoder.down.0.block.0.norm1.weight" in ours and "encoder.mid.attn_1.proj_out.weight" in ours
    load_autoencoder_state(_kl(), ldm_ckpt, layout="compvis")


def test_diffusers_renaming_round_trips_and_is_a_bijection():
    for net in (_kl(), _vq()):
        sd = net.state_dict()
        names = diffusers_key_map(sd)
        assert len(set(names.values())) == len(names)
        back = from_diffusers(to_diffusers(sd), net)
        assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    assert names["decoder.up.0.block.0.nin_shortcut.weight"] == "decoder.up_blocks.2.resnets.0.conv_shortcut.weight"
    assert names["encoder.mid.attn_1.q.weight"] == "encoder.mid_block.attentions.0.to_q.weight"


@pytest.mark.parametrize("make", [_kl, _vq])
def test_output_parity_with_diffusers_modules(make):
    diffusers = pytest.importorskip("diffusers")
    net = make()
    cls = diffusers.AutoencoderKL if net.kind == "kl" else diffusers.VQModel
    theirs = cls(**diffusers_config(net)).eval()
    theirs.load_state_dict(to_diffusers(net.state_dict()), strict=True)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        if net.kind == "kl":
            q = net.posterior(x)
            dist = theirs.encode(x).latent_dist
            torch.testing.assert_close(q.mean, dist.mean, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(q.logvar, dist.logvar, rtol=1e-4, atol=1e-5)
            z = q.mean
        else:
            z = net.encode(x)  # pre-quantisation, as diffusers' VQModel.encode
            torch.testing.assert_close(z, theirs.encode(x).latents, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net.decode(z), theirs.decode(z).sample, rtol=1e-4, atol=1e-4)
    # and back: diffusers' weights into a fresh diffzoo net
    fresh = make()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    load_autoencoder_state(fresh, theirs.state_dict(), layout="diffusers")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in net.state_dict().items())


def test_a_foreign_state_dict_is_refused_by_name():
    net = _kl()
    bad = to_diffusers(net.state_dict())
    bad.pop("encoder.conv_in.weight")
    with pytest.raises(CheckpointError, match="encoder.conv_in.weight"):
        from_diffusers(bad, net)
    with pytest.raises(CheckpointError, match="no encoder.down"):
        to_diffusers({"foo.weight": torch.zeros(1)})
