"""AutoencoderModule outside a trainer: its reconstruction grid, and the checks of its parts."""

import functools

import pytest
import torch

from diffzoo.errors import ConfigError
from diffzoo.lit.autoencoder import AutoencoderModule
from diffzoo.networks.autoencoder import AutoencoderKL, VQModel
from diffzoo.objectives.autoencoder_losses import KLAutoencoderLoss

NET = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, resolution=32, in_channels=1, norm_groups=4)


def _module(net):
    loss = KLAutoencoderLoss(disc_in_channels=1, disc_ndf=8, perceptual="none")
    return AutoencoderModule(net, loss, functools.partial(torch.optim.Adam, lr=1e-3), data_shape=(1, 32, 32))


def test_sample_is_held_out_images_then_their_reconstructions():
    torch.manual_seed(0)
    module = _module(AutoencoderKL(**NET))
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    module.preview = x
    grid = module.sample(6)
    assert grid.shape == (6, 1, 32, 32)
    torch.testing.assert_close(grid[:3], x[:3])
    net = module.net.eval()
    with torch.no_grad():
        torch.testing.assert_close(grid[3:], net.decode(net.posterior(x[:3]).mode()).clamp(-1, 1))
    assert module.sample(5).shape == (5, 1, 32, 32)


def test_a_vq_net_with_a_kl_loss_is_refused():
    with pytest.raises(ConfigError, match="objective=ae_vq"):
        _module(VQModel(n_embed=8, **NET))


def test_two_optimizers_one_for_the_autoencoder_one_for_the_discriminator():
    module = _module(AutoencoderKL(**NET))
    opt_ae, opt_d = module.configure_optimizers()
    ae = {id(p) for g in opt_ae.param_groups for p in g["params"]}
    d = {id(p) for g in opt_d.param_groups for p in g["params"]}
    assert ae == {id(p) for p in module.net.parameters()}  # logvar not trained (the released code)
    assert d == {id(p) for p in module.objective.discriminator.parameters()}
    module.objective.train_logvar = True
    module.objective.logvar.requires_grad_(True)
    opt_ae, _ = module.configure_optimizers()
    assert id(module.objective.logvar) in {id(p) for g in opt_ae.param_groups for p in g["params"]}
