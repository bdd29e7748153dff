"""DDPM++ / NCSN++ (Score SDE App. H): parameter counts against the official module list, FIR
resampling against closed forms, skip rescaling, the Fourier embedding, shapes, errors, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffzoo.networks import NCSNpp
from diffzoo.networks.ncsnpp_layers import (
    SKIP_SCALE, AttentionBlockPP, ResBlockPP, fir_conv_downsample, fir_downsample, fir_kernel_2d, fir_upsample,
    fir_upsample_conv,
)
from tests.helpers import compose_train

CIFAR_DDPMPP = dict(fir=False, progressive_input="none", embedding_type="positional")
CIFAR_NCSNPP = dict(fir=True, progressive_input="residual", embedding_type="fourier", rescale_input=True)
SMALL = dict(in_channels=1, image_size=8, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
             attention_resolutions=(4,))
VARIANTS = [  # every progressive / resblock / FIR / embedding option at least once
    dict(),
    dict(fir=True, progressive_input="residual", embedding_type="fourier", rescale_input=True),
    dict(fir=True, progressive="output_skip", progressive_input="input_skip", embedding_type="fourier"),
    dict(progressive="residual", progressive_input="input_skip", progressive_combine="cat"),
    dict(resblock_type="ddpm", fir=True, progressive="residual", progressive_input="residual"),
    dict(resblock_type="ddpm", resamp_with_conv=False, progressive="output_skip", skip_rescale=False),
]


def n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def official_count(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), image_size=32, channels=3,
                   resblock_type="biggan", progressive="none", progressive_input="none", progressive_combine="sum",
                   embedding_type="positional", resamp_with_conv=True, count_fourier_W=False, **_):
    """Parameters of the official ``models/ncsnpp.py::NCSNpp``, walking its ``__init__`` module list.

    Per module (weights + biases): conv k×k i→o: k²io + o; Linear / NIN / 1×1 conv i→o: io + o;
    GroupNorm(c): 2c. ``ResnetBlockBigGANpp(i, o)``: GN(i) + conv3(i, o) + Dense(4nf, o) + GN(o) + conv3(o, o)
    + conv1(i, o) if i ≠ o or it resamples; ``ResnetBlockDDPMpp``: the same with NIN(i, o) if i ≠ o.
    ``AttnBlockpp(c)``: GN(c) + 4 NIN(c, c). Time embedding: Dense(nf or 2nf, 4nf) + Dense(4nf, 4nf)
    (+ the nf fixed Fourier frequencies W, an ``nn.Parameter(requires_grad=False)`` there, a buffer here).
    For CIFAR-10 (nf 128, mult 1-2-2-2, 4 blocks, attention at 16) this gives DDPM++ cont. 61,804,419 and
    NCSN++ cont. 62,758,787 (+128 with W); the "deep" nets (8 blocks) 106,632,579 and 107,586,947.
    """
    conv = lambda i, o, k: k * k * i * o + o  # noqa: E731
    lin = lambda i, o: i * o + o  # noqa: E731
    temb = 4 * nf

    def res(i, o=None, resample=False):
        o = o or i
        n = 2 * i + conv(i, o, 3) + lin(temb, o) + 2 * o + conv(o, o, 3)
        return n + (lin(i, o) if (i != o or (resample and resblock_type == "biggan")) else 0)

    def attn(c):
        return 2 * c + 4 * lin(c, c)

    def resampler():  # layerspp.Upsample / Downsample of the "ddpm" blocks
        return conv(in_ch, in_ch, 3) if resamp_with_conv else 0

    total = (nf if count_fourier_W else 0) if embedding_type == "fourier" else 0
    total += lin(2 * nf if embedding_type == "fourier" else nf, temb) + lin(temb, temb)
    total += conv(channels, nf, 3)
    hs_c, in_ch, pyramid_ch = [nf], nf, channels
    resolutions = [image_size // 2**i for i in range(len(ch_mult))]
    for level, mult in enumerate(ch_mult):
        for _ in range(num_res_blocks):
            total += res(in_ch, nf * mult)
            in_ch = nf * mult
            total += attn(in_ch) if resolutions[level] in attn_resolutions else 0
            hs_c.append(in_ch)
        if level != len(ch_mult) - 1:
            total += res(in_ch, resample=True) if resblock_type == "biggan" else resampler()
            if progressive_input == "input_skip":
                total += lin(channels, in_ch)  # Combine's 1×1 conv
                in_ch *= 2 if progressive_combine == "cat" else 1
            elif progressive_input == "residual":
                total += conv(pyramid_ch, in_ch, 3)  # the conv of the pyramid's Downsample
                pyramid_ch = in_ch
            hs_c.append(in_ch)
    in_ch = hs_c[-1]
    total += 2 * res(in_ch) + attn(in_ch)
    for level in reversed(range(len(ch_mult))):
        for _ in range(num_res_blocks + 1):
            total += res(in_ch + hs_c.pop(), nf * ch_mult[level])
            in_ch = nf * ch_mult[level]
        total += attn(in_ch) if resolutions[level] in attn_resolutions else 0
        if progressive == "output_skip":
            total += 2 * in_ch + conv(in_ch, channels, 3)
        elif progressive == "residual" and level == len(ch_mult) - 1:
            total += 2 * in_ch + conv(in_ch, in_ch, 3)
            pyramid_ch = in_ch
        elif progressive == "residual":
            total += conv(pyramid_ch, in_ch, 3)  # the conv of the pyramid's Upsample
            pyramid_ch = in_ch
        if level != 0:
            total += res(in_ch, resample=True) if resblock_type == "biggan" else resampler()
    assert not hs_c
    if progressive != "output_skip":
        total += 2 * in_ch + conv(in_ch, channels, 3)
    return total


# ----------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("kw, expected", [(CIFAR_DDPMPP, 61_804_419), (CIFAR_NCSNPP, 62_758_787)])
def test_cifar10_parameter_counts_equal_the_official_models(kw, expected):
    with torch.device("meta"):
        net = NCSNpp(**kw)
    assert official_count(**kw) == expected
    assert n_params(net) == expected
    assert official_count(**kw, count_fourier_W=True) - n_params(net) == (128 if kw["embedding_type"] == "fourier" else 0)
    with torch.device("meta"):
        deep = NCSNpp(num_res_blocks=8, **kw)
    assert n_params(deep) == official_count(num_res_blocks=8, **kw)


@pytest.mark.parametrize("kw", VARIANTS)
def test_parameter_count_matches_the_official_module_list_for_every_option(kw):
    with torch.device("meta"):
        net = NCSNpp(**SMALL, **kw)
    ref = dict(nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(4,), image_size=8, channels=1)
    assert n_params(net) == official_count(**ref, **kw)


def test_configs_hold_the_paper_settings():
    for name, kw, count in [("ddpmpp_cifar10", CIFAR_DDPMPP, 61_804_419), ("ncsnpp_cifar10", CIFAR_NCSNPP, 62_758_787)]:
        cfg = compose_train([f"net={name}"]).net
        assert (cfg.base_channels, tuple(cfg.channel_mult), cfg.num_res_blocks, tuple(cfg.attention_resolutions)) == (
            128, (1, 2, 2, 2), 4, (16,))
        assert (cfg.dropout, cfg.resblock_type, cfg.skip_rescale, cfg.progressive) == (0.1, "biggan", True, "none")
        assert {k: cfg[k] for k in kw} == kw
        with torch.device("meta"):
            assert n_params(NCSNpp(**{k: v for k, v in cfg.items() if k != "_target_"})) == count
    assert list(compose_train(["net=ncsnpp_cifar10"]).net.fir_kernel) == [1, 3, 3, 1]


@pytest.mark.parametrize("experiment", ["sde_ve_cifar10_ncsnpp", "sde_ve_digits_ncsnpp"])
def test_ve_experiments_feed_log_sigma_up_to_a_constant(experiment):
    """The net gets c·t; VE eq. 31, log σ_t = log σ_min + t·ln(σ_max/σ_min), needs c = ln(σ_max/σ_min)."""
    cfg = compose_train([f"experiment={experiment}"])
    assert cfg.net.embedding_type == "fourier" and cfg.parameterization.kind == "scaled"
    assert cfg.model.data_transform == "unit" and cfg.net.rescale_input is True
    assert cfg.parameterization.time_scale == pytest.approx(math.log(cfg.schedule.sigma_max / cfg.schedule.sigma_min), rel=1e-12)


def test_fourier_features_of_shifted_log_sigma_are_a_fixed_rotation():
    """[sin, cos](2πw(u + a)) = R(2πwa)·[sin, cos](2πwu): the embedding of log σ_t and of log σ_t − log σ_min
    differ by a fixed orthogonal map, absorbed by the first Linear layer."""
    torch.manual_seed(0)
    net = NCSNpp(**SMALL, embedding_type="fourier")
    w = net.fourier.freqs.double()
    u = torch.linspace(0, math.log(5000), 7, dtype=torch.float64)  # log σ_t − log σ_min
    a = math.log(0.01)
    emb = lambda c: torch.cat([torch.sin(2 * math.pi * c[:, None] * w), torch.cos(2 * math.pi * c[:, None] * w)], 1)  # noqa: E731
    assert torch.allclose(net.fourier(u).double(), emb(u), atol=1e-4)  # closed form of the Fourier embedding
    s, c = emb(u).chunk(2, dim=1)
    phi = 2 * math.pi * w * a
    rotated = torch.cat([s * torch.cos(phi) + c * torch.sin(phi), c * torch.cos(phi) - s * torch.sin(phi)], dim=1)
    assert torch.allclose(rotated, emb(u + a), atol=1e-9)


# ----------------------------------------------------------------------------- FIR resampling
def test_fir_kernel_is_normalised_to_its_gain():
    k = fir_kernel_2d([1, 3, 3, 1], gain=4.0)
    assert k.shape == (4, 4) and torch.allclose(k, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 16)
    assert float(fir_kernel_2d([1, 3, 3, 1]).sum()) == pytest.approx(1.0)


def test_fir_resampling_of_constant_and_linear_images():
    """Interior pixels (the zero padding only reaches the border): a constant stays constant under
    up- and down-sampling; a ramp x_j = j becomes the ramp at the new pixel centres: j/2 − 1/4 up, 2j + 1/2 down."""
    ku, kd = fir_kernel_2d([1, 3, 3, 1], 4.0).double(), fir_kernel_2d([1, 3, 3, 1]).double()
    const = torch.full((1, 2, 8, 8), 3.0, dtype=torch.float64)
    up = fir_upsample(const, ku)
    assert up.shape == (1, 2, 16, 16) and torch.allclose(up[..., 1:-1, 1:-1], const.new_full((), 3.0).expand(1, 2, 14, 14))
    down = fir_downsample(up, kd)
    assert down.shape == (1, 2, 8, 8) and torch.allclose(down[..., 1:-1, 1:-1], torch.tensor(3.0, dtype=torch.float64))
    ramp = torch.arange(8, dtype=torch.float64).expand(1, 1, 8, 8)
    assert torch.allclose(fir_upsample(ramp, ku)[0, 0, 4, 1:-1], torch.arange(1, 15, dtype=torch.float64) / 2 - 0.25)
    assert torch.allclose(fir_downsample(ramp, kd)[0, 0, 1, 1:-1], 2 * torch.arange(1, 3, dtype=torch.float64) + 0.5)


def test_fused_fir_conv_equals_resample_then_conv_away_from_the_border():
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 12, 12, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    ku, kd = fir_kernel_2d([1, 3, 3, 1], 4.0).double(), fir_kernel_2d([1, 3, 3, 1]).double()
    fused, plain = fir_upsample_conv(x, w, ku), F.conv2d(fir_upsample(x, ku), w, padding=1)
    assert fused.shape == (2, 4, 24, 24) and torch.allclose(fused[..., 3:-3, 3:-3], plain[..., 3:-3, 3:-3], atol=1e-12)
    fused, plain = fir_conv_downsample(x, w, kd), fir_downsample(F.conv2d(x, w, padding=1), kd)
    assert fused.shape == (2, 4, 6, 6) and torch.allclose(fused[..., 2:-2, 2:-2], plain[..., 2:-2, 2:-2], atol=1e-12)


# ----------------------------------------------------------------------------- blocks
@pytest.mark.parametrize("kind, resample", [("biggan", None), ("biggan", "down"), ("biggan", "up"), ("ddpm", None)])
def test_resblock_skip_rescale_divides_the_residual_sum_by_sqrt2(kind, resample):
    torch.manual_seed(0)
    a = ResBlockPP(16, 32, 8, kind=kind, resample=resample, fir=True, skip_rescale=True).eval()
    b = ResBlockPP(16, 32, 8, kind=kind, resample=resample, fir=True, skip_rescale=False).eval()
    torch.nn.init.normal_(a.conv1.weight)  # not zero, so both branches count
    b.load_state_dict(a.state_dict())
    x, emb = torch.randn(2, 16, 8, 8), torch.randn(2, 8)
    out = a(x, emb)
    assert out.shape == (2, 32, *{None: (8, 8), "down": (4, 4), "up": (16, 16)}[resample])
    assert SKIP_SCALE == pytest.approx(2 ** -0.5)
    assert torch.allclose(out, b(x, emb) * SKIP_SCALE, atol=1e-6)


def test_blocks_start_as_rescaled_identity():
    """The last layer of every residual branch starts at zero (init_scale=0), so at init a
    width-preserving block returns x/√2 and the whole network returns 0."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(ResBlockPP(16, 16, 8)(x, torch.randn(2, 8)), x * SKIP_SCALE)
    assert torch.allclose(AttentionBlockPP(16)(x), x * SKIP_SCALE)
    assert torch.allclose(AttentionBlockPP(16, skip_rescale=False)(x), x)
    for kw in VARIANTS:
        assert torch.count_nonzero(NCSNpp(**SMALL, **kw)(torch.randn(2, 1, 8, 8), torch.rand(2))) == 0


def test_default_init_is_variance_scaling_fan_avg_uniform():
    torch.manual_seed(0)
    blk = ResBlockPP(64, 128, 256)
    bound = math.sqrt(6 / (64 * 9 + 128 * 9))  # U(±√(3·scale/fan_avg)), scale 1
    w = blk.conv0.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound and w.var().item() == pytest.approx(bound**2 / 3, rel=0.05)
    attn = AttentionBlockPP(128)
    assert attn.qkv.weight.abs().max() <= math.sqrt(0.1 * 6 / 256)  # NIN init scale 0.1 for q, k, v
    assert torch.count_nonzero(blk.conv1.weight) == 0 and torch.count_nonzero(attn.proj_out.weight) == 0


# ----------------------------------------------------------------------------- the network
@pytest.mark.parametrize("kw", VARIANTS)
@pytest.mark.parametrize("size", [8, 16, 12])
def test_output_shape(kw, size):
    net = NCSNpp(**SMALL, **kw)
    assert net(torch.randn(2, 1, size, size), torch.rand(2)).shape == (2, 1, size, size)
    assert net(torch.randn(3, 1, size, 2 * size), torch.tensor(0.5)).shape == (3, 1, size, 2 * size)


def test_cifar10_nets_run_once():
    torch.manual_seed(0)
    for kw, c in [(CIFAR_DDPMPP, torch.tensor([999 * 0.3])), (CIFAR_NCSNPP, torch.tensor([math.log(0.7)]))]:
        net = NCSNpp(**kw).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 32, 32), c).shape == (1, 3, 32, 32)


def test_gradients_reach_every_parameter_and_the_input():
    torch.manual_seed(0)
    for kw in VARIANTS:
        net = NCSNpp(**SMALL, **kw)
        with torch.no_grad():  # leave the zero init, under which only the output layers get gradients
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(2, 1, 8, 8, requires_grad=True)
        net(x, torch.rand(2)).square().sum().backward()
        assert x.grad.abs().sum() > 0
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (kw, name)


def test_determinism():
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    nets = []
    for _ in range(2):
        torch.manual_seed(3)
        nets.append(NCSNpp(**SMALL, **VARIANTS[1]))
    for p, q in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(p, q)
    assert torch.equal(nets[0].fourier.freqs, nets[1].fourier.freqs)
    with torch.no_grad():
        nets[0].eval()
        for p in nets[0].parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert torch.equal(nets[0](x, t), nets[0](x, t))
        nets[0].train()
        torch.manual_seed(1)
        a = nets[0](x, t)
        torch.manual_seed(1)
        assert torch.equal(a, nets[0](x, t))


def test_the_noise_input_changes_the_output():
    torch.manual_seed(0)
    net = NCSNpp(**SMALL, embedding_type="fourier").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
        out = net(x, torch.tensor([-2.0, 1.0]))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("kw, match", [
    (dict(resblock_type="stylegan"), "resblock_type must be one of"),
    (dict(progressive="skip"), "progressive must be one of"),
    (dict(progressive_input="skip"), "progressive_input must be one of"),
    (dict(progressive_combine="mul"), "progressive_combine must be one of"),
    (dict(embedding_type="learned"), "embedding_type must be one of"),
    (dict(image_size=12, channel_mult=(1, 2, 2, 2)), "not divisible by 2\\^"),
    (dict(attention_resolutions=(3,)), "attention_resolutions \\[3\\] are not reached"),
    (dict(base_channels=100, channel_mult=(1, 2)), "GroupNorm uses min"),
    (dict(num_res_blocks=0), "num_res_blocks must be a positive integer"),
    (dict(channel_mult=()), "channel_mult must be a non-empty"),
    (dict(dropout=1.0), "dropout must lie in"),
    (dict(fir=True, fir_kernel=(1,)), "fir_kernel must list"),
    (dict(embedding_type="fourier", fourier_scale=0.0), "fourier_scale must be > 0"),
])
def test_bad_arguments_give_clear_errors(kw, match):
    args = {**SMALL, **kw}
    with pytest.raises(ValueError, match=match):
        NCSNpp(**args)


def test_bad_inputs_give_clear_errors():
    net = NCSNpp(**SMALL)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 1, H, W\]"):
        net(torch.randn(2, 3, 8, 8), torch.rand(2))
    with pytest.raises(ValueError, match="must be divisible by 4"):
        net(torch.randn(2, 1, 10, 10), torch.rand(2))
    with pytest.raises(ValueError, match=r"t must have shape \[2\]"):
        net(torch.randn(2, 1, 8, 8), torch.rand(3))
    with pytest.raises(ValueError, match="unconditional"):
        net(torch.randn(2, 1, 8, 8), torch.rand(2), y=torch.zeros(2, dtype=torch.long))
