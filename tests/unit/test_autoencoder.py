"""First-stage autoencoders (issue 15): latent shapes per f, the diagonal Gaussian's KL and NLL against
torch.distributions, the vector quantizer (nearest code, straight-through gradient, both loss forms,
perplexity / usage), the PatchGAN layout and the losses' hinge / adaptive weight against hand computations."""

import math

import pytest
import torch
from torch import nn

from diffzoo.errors import ConfigError
from diffzoo.networks.autoencoder import AutoencoderKL, VQModel
from diffzoo.networks.first_stage import FirstStage
from diffzoo.networks.gaussian_posterior import DiagonalGaussian
from diffzoo.networks.patchgan import NLayerDiscriminator
from diffzoo.networks.vector_quantizer import VectorQuantizer, codebook_perplexity
from diffzoo.objectives.autoencoder_losses import (KLAutoencoderLoss, VQAutoencoderLoss, adaptive_weight, adopt_weight,
                                                   check_loss_fits, hinge_d_loss)
from diffzoo.objectives.perceptual import RandomFeaturePerceptual, make_perceptual

TINY = dict(ch=8, num_res_blocks=1, resolution=32, in_channels=1, norm_groups=4)
CH_MULT = {1: (1,), 2: (1, 2), 4: (1, 2, 2), 8: (1, 1, 2, 2), 16: (1, 1, 1, 2, 2)}


@pytest.mark.parametrize("f", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("cls", [AutoencoderKL, VQModel])
def test_latent_shape_is_C_H_over_f_W_over_f(cls, f):
    torch.manual_seed(0)
    extra = {"n_embed": 16} if cls is VQModel else {}
    net = cls(ch_mult=CH_MULT[f], z_channels=4, embed_dim=3, attn_resolutions=[32 // f], **TINY, **extra).eval()
    assert isinstance(net, FirstStage) and net.downsampling_factor == f and net.latent_channels == 3
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z = net.encode(x)
        assert z.shape == (2, 3, 32 // f, 32 // f) == (2, *net.latent_shape((1, 32, 32)))
        assert net.decode(z).shape == x.shape
        assert net(x).x_rec.shape == x.shape


def test_ch_mult_outside_the_factors_is_a_config_error():
    with pytest.raises(ConfigError, match="net.ch_mult"):
        AutoencoderKL(ch_mult=(1, 1, 1, 1, 1, 1), **TINY)
    with pytest.raises(ConfigError, match="norm_groups"):
        AutoencoderKL(ch=10, ch_mult=(1,), num_res_blocks=1, norm_groups=4)


def test_vq_latent_is_taken_before_quantisation_and_decode_quantises():
    torch.manual_seed(1)
    net = VQModel(ch_mult=(1, 2), z_channels=3, embed_dim=3, n_embed=8, **TINY).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        z = net.encode(x)
        q = net.quantize(z).z_q
        assert not torch.allclose(z, q)  # a continuous latent, not a code vector
        assert torch.equal(net.decode(z), net.decoder(net.post_quant_conv(q)))
        assert torch.equal(net.decode(z, quantize=False), net.decoder(net.post_quant_conv(z)))


def test_diagonal_gaussian_kl_and_nll_match_the_closed_forms():
    torch.manual_seed(2)
    moments = torch.randn(3, 8, 4, 4)
    q = DiagonalGaussian(moments)
    mean, logvar = moments[:, :4], moments[:, 4:]
    ref = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    std_normal = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    kl = torch.distributions.kl_divergence(ref, std_normal).sum(dim=(1, 2, 3))
    torch.testing.assert_close(q.kl(), kl, rtol=1e-5, atol=1e-5)
    z = q.sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(q.nll(z), -ref.log_prob(z).sum(dim=(1, 2, 3)), rtol=1e-5, atol=1e-4)
    # N(0, I) has zero KL; logvar is clamped to [-30, 20] as the reference code
    assert torch.allclose(DiagonalGaussian(torch.zeros(1, 2, 3, 3)).kl(), torch.zeros(1))
    assert DiagonalGaussian(torch.full((1, 2, 1, 1), 50.0)).logvar.max() == 20.0


def test_vq_picks_the_nearest_code_and_passes_gradients_straight_through():
    torch.manual_seed(3)
    vq = VectorQuantizer(n_embed=6, embed_dim=3)
    nn.init.normal_(vq.embedding.weight)
    z = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = vq(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = torch.cdist(flat, vq.embedding.weight.detach()).argmin(1).view(2, 4, 5)
    assert torch.equal(out.indices, nearest)
    torch.testing.assert_close(out.z_q.detach(), vq.embedding.weight.detach()[nearest].permute(0, 3, 1, 2))
    w = torch.randn_like(z)
    (grad,) = torch.autograd.grad((w * out.z_q).sum(), z)
    assert torch.equal(grad, w)  # d z_q / d z = I (VQ-VAE sec. 3.2)


@pytest.mark.parametrize("form", ["legacy", "paper"])
def test_vq_loss_forms_weight_codebook_and_commitment_as_written(form):
    torch.manual_seed(4)
    vq = VectorQuantizer(n_embed=4, embed_dim=2, beta=0.25, loss_form=form)
    nn.init.normal_(vq.embedding.weight)
    z = torch.randn(1, 2, 3, 3, requires_grad=True)
    out = vq(z)
    sq = (out.z_q.detach() - z.detach()).pow(2).mean()
    # both terms have the same value; they differ in where the gradient goes
    torch.testing.assert_close(out.loss, (1 + 0.25) * sq)
    gz, ge = torch.autograd.grad(out.loss, [z, vq.embedding.weight])
    e = vq.embedding.weight.detach()[out.indices].permute(0, 3, 1, 2)
    n = z.numel()
    commit_w, code_w = (1.0, 0.25) if form == "legacy" else (0.25, 1.0)
    torch.testing.assert_close(gz, commit_w * 2 * (z.detach() - e) / n)  # ‖z − sg[e]‖² pulls z to e
    hand = torch.zeros_like(ge)
    hand.index_add_(0, out.indices.reshape(-1), (code_w * 2 * (e - z.detach()) / n).permute(0, 2, 3, 1).reshape(-1, 2))
    torch.testing.assert_close(ge, hand)


def test_codebook_perplexity_and_usage():
    idx = torch.tensor([0, 1, 2, 3] * 5)  # four of eight codes, equally often
    perplexity, usage = codebook_perplexity(idx, 8)
    assert math.isclose(float(perplexity), 4.0, rel_tol=1e-6) and float(usage) == 0.5
    perplexity, usage = codebook_perplexity(torch.zeros(10, dtype=torch.long), 8)
    assert math.isclose(float(perplexity), 1.0, rel_tol=1e-6) and float(usage) == 1 / 8
    net = VQModel(ch_mult=(1, 2), z_channels=3, embed_dim=3, n_embed=8, **TINY)
    stats = net(torch.rand(2, 1, 32, 32)).stats
    assert {"perplexity", "codebook_usage"} <= set(stats)


def test_patchgan_layout_and_parameter_count():
    d = NLayerDiscriminator(3, ndf=64, n_layers=3)
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # pix2pix 70x70 PatchGAN on 256 px
    # C64 (bias) - C128 - C256 - C512 (bias-free convs + BatchNorm) - 1 (bias), all 4x4 kernels
    hand = (3 * 64 * 16 + 64) + (64 * 128 * 16 + 2 * 128) + (128 * 256 * 16 + 2 * 256) + (256 * 512 * 16 + 2 * 512) + (512 * 16 + 1)
    assert sum(p.numel() for p in d.parameters()) == hand == 2_765_633
    assert NLayerDiscriminator(1, ndf=8)(torch.zeros(2, 1, 32, 32)).shape == (2, 1, 2, 2)


def test_hinge_loss_and_adopt_weight_closed_forms():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.5])
    # ½ (mean relu(1 − r) + mean relu(1 + f)) = ½ ((0 + 0.5 + 2)/3 + (0 + 1 + 2.5)/3)
    assert math.isclose(float(hinge_d_loss(real, fake)), 0.5 * (2.5 / 3 + 3.5 / 3), rel_tol=1e-6)
    assert adopt_weight(0.7, 4, 5) == 0.0 and adopt_weight(0.7, 5, 5) == 0.7


def test_adaptive_weight_against_a_hand_computation():
    W = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], requires_grad=True)
    x, t, c = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.3, -0.7]), 0.25
    rec = (W @ x - t).pow(2).sum()          # ∇_W rec = 2 (W x − t) xᵀ, Frobenius norm 2 ‖W x − t‖ ‖x‖
    g = c * W.sum()                         # ∇_W g = c·1, norm |c| √6
    hand = 2 * (W @ x - t).norm() * x.norm() / (abs(c) * math.sqrt(6) + 1e-4)
    torch.testing.assert_close(adaptive_weight(rec, g, W), hand.detach())
    assert float(adaptive_weight(rec, 0.0 * W.sum(), W)) == 1e4  # clamped


def _kl_out(x, x_rec, kl):
    from diffzoo.networks.autoencoder import AutoencoderOutput

    return AutoencoderOutput(x_rec, torch.zeros(1), kl)


def test_kl_loss_is_the_laplace_nll_sum_over_pixels_plus_weighted_kl_and_gan_from_disc_start():
    torch.manual_seed(5)
    loss = KLAutoencoderLoss(disc_start=3, kl_weight=1e-3, disc_weight=0.5, disc_in_channels=1, disc_ndf=8,
                             logvar_init=0.7, perceptual="none")
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    W = torch.randn(1, 1, 3, 3, requires_grad=True)
    x_rec = torch.nn.functional.conv2d(x, W, padding=1)
    kl = torch.tensor(3.0)
    before = loss.generator_loss(x, _kl_out(x, x_rec, kl), step=2, last_layer=W)
    nll = ((x - x_rec).abs().sum() / math.exp(0.7) + 0.7 * x[0].numel() * 2) / 2  # Σ (r/e^s + s) / B
    torch.testing.assert_close(before.loss, nll + 1e-3 * kl)
    assert float(before.logs["d_weight"]) == 0.0 and float(before.logs["disc_factor"]) == 0.0
    after = loss.generator_loss(x, _kl_out(x, x_rec, kl), step=3, last_layer=W)
    g = -loss.discriminator(x_rec).mean()
    lam = 0.5 * adaptive_weight(nll, g, W)
    torch.testing.assert_close(after.loss, nll + 1e-3 * kl + lam * g, rtol=1e-5, atol=1e-5)
    d = loss.discriminator_loss(x, x_rec, step=2)
    assert float(d.loss) == 0.0  # the discriminator's loss is switched off before disc_start too
    assert loss.generator_parameters() == []  # logvar is not trained, as the released code


def test_vq_loss_is_mean_reconstruction_plus_codebook():
    loss = VQAutoencoderLoss(disc_start=10, codebook_weight=2.0, disc_in_channels=1, disc_ndf=8, perceptual="none")
    x, x_rec = torch.zeros(2, 1, 32, 32), torch.full((2, 1, 32, 32), 0.5)
    from diffzoo.networks.autoencoder import AutoencoderOutput

    out = loss.generator_loss(x, AutoencoderOutput(x_rec, x, torch.tensor(0.25)), step=0, last_layer=None)
    torch.testing.assert_close(out.loss, torch.tensor(0.5 + 2.0 * 0.25))


def test_loss_must_fit_the_autoencoder():
    net = AutoencoderKL(ch_mult=(1, 2), **TINY)
    with pytest.raises(ConfigError, match="objective=ae_kl"):
        check_loss_fits(VQAutoencoderLoss(disc_in_channels=1, disc_ndf=8, perceptual="none"), net)
    with pytest.raises(ConfigError, match="disc_in_channels"):
        check_loss_fits(KLAutoencoderLoss(disc_in_channels=3, disc_ndf=8, perceptual="none"), net)
    with pytest.raises(ConfigError, match="objective.perceptual"):
        make_perceptual("vgg", 1)


def test_random_feature_perceptual_distance_is_fixed_and_a_distance():
    a, b = RandomFeaturePerceptual(1, seed=3), RandomFeaturePerceptual(1, seed=3)
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    assert torch.equal(a(x, y), b(x, y))  # the seed fixes the network
    assert torch.allclose(a(x, x), torch.zeros(2, 1, 1, 1)) and bool((a(x, y) > 0).all())
    assert not any(p.requires_grad for p in a.parameters())
    assert "stands in for LPIPS" in a.description
    try:
        make_perceptual("lpips", 1)
    except ConfigError as err:  # no lpips package or no VGG weights on disk: one line naming the fix
        assert "lpips" in str(err) and "\n" not in str(err)
