"""NCSN / NCSNv2 image networks: InstanceNorm++ maths, the official parameter counts, shapes, conditioning,
and loading official checkpoints (key layout from tests/fixtures/ncsn_official_state_keys.json, the
state-dict keys and shapes of the official models at ngf 4)."""

import json
from pathlib import Path

import pytest
import torch

from diffzoo.networks.ncsn_checkpoints import convert_official_state_dict, load_official_weights
from diffzoo.networks.ncsn_refinenet import NCSN_VARIANTS, CondInstanceNorm2dPlus, NCSNRefineNet

OFFICIAL_KEYS = json.loads((Path(__file__).parents[1] / "fixtures" / "ncsn_official_state_keys.json").read_text())


def perturb_(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Move every parameter off its initialisation (level embeddings start identical)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# ------------------------------------------------------------------ InstanceNorm++
@pytest.mark.parametrize("num_classes", [3, None])
def test_instance_norm_pp_closed_form(num_classes):
    """NCSN App. A (code form): z_k = γ_k ((x_k − μ_k)/s_k + α_k (μ_k − m)/v) + β_k, so channel k of the
    output has spatial std |γ_k| and spatial mean γ_k α_k (μ_k − m)/v + β_k, v the unbiased std of {μ_k}."""
    norm = CondInstanceNorm2dPlus(6, num_classes=num_classes, eps=1e-12).double()
    perturb_(norm)
    x = torch.randn(4, 6, 9, 7, dtype=torch.float64) * 3 + torch.randn(4, 6, 1, 1, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    z = norm(x, y)
    mu = x.mean((2, 3))
    m, v = mu.mean(1, keepdim=True), mu.std(1, keepdim=True)
    if num_classes is None:
        gamma, alpha, beta = norm.gamma.expand(4, -1), norm.alpha.expand(4, -1), norm.beta.expand(4, -1)
    else:
        gamma, alpha, beta = norm.embed.weight[y].chunk(3, dim=1)
    torch.testing.assert_close(z.mean((2, 3)), gamma * alpha * (mu - m) / v + beta)
    torch.testing.assert_close(z.std((2, 3), unbiased=False), gamma.abs())


def test_instance_norm_pp_initialisation_and_conditioning():
    norm = CondInstanceNorm2dPlus(5, num_classes=4)
    gamma, alpha, beta = norm.embed.weight.chunk(3, dim=1)
    assert beta.abs().max() == 0 and (gamma - 1).abs().max() < 0.2 and (alpha - 1).abs().max() < 0.2
    with pytest.raises(ValueError, match="level index y"):
        norm(torch.randn(2, 5, 4, 4))
    shared = CondInstanceNorm2dPlus(5, num_classes=None)
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(shared(x), shared(x, torch.tensor([7, 1, 0])))


# ------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("kwargs, count", [
    # the official models' counts (ermongroup/ncsn CondRefineNetDilated, ermongroup/ncsnv2 NCSNv2*)
    ({"variant": "ncsn", "in_channels": 3, "ngf": 128, "num_classes": 10}, 30_117_635),  # CIFAR-10 / CelebA
    ({"variant": "ncsn", "in_channels": 1, "ngf": 64, "num_classes": 10}, 7_638_657),  # MNIST
    ({"variant": "ncsnv2", "in_channels": 3, "ngf": 128, "num_classes": None}, 29_694_083),  # CIFAR-10 / CelebA 64
    ({"variant": "ncsnv2_deeper", "in_channels": 3, "ngf": 128, "num_classes": None}, 83_445_379),  # LSUN 128
    ({"variant": "ncsnv2_deepest", "in_channels": 3, "ngf": 128, "num_classes": None}, 94_132_611),  # FFHQ 256
])
def test_parameter_counts_equal_the_official_models(kwargs, count):
    with torch.device("meta"):
        net = NCSNRefineNet(**kwargs)
    assert sum(p.numel() for p in net.parameters()) == count


def test_ncsn_parameters_grow_with_the_levels_only_in_the_norms():
    """NCSN's only level-dependent parameters are the 3C-wide norm embeddings: L → L' adds 3C(L' − L) per norm."""
    with torch.device("meta"):
        a, b = NCSNRefineNet(3, 8, 10, "ncsn"), NCSNRefineNet(3, 8, 232, "ncsn")
    widths = [m.num_features for m in a.modules() if isinstance(m, CondInstanceNorm2dPlus)]
    extra = sum(p.numel() for p in b.parameters()) - sum(p.numel() for p in a.parameters())
    assert extra == sum(3 * c * (232 - 10) for c in widths)


# ------------------------------------------------------------------ forward
@pytest.mark.parametrize("variant, shape", [
    ("ncsn", (2, 1, 28, 28)), ("ncsn", (2, 3, 32, 32)), ("ncsn", (1, 3, 15, 17)), ("ncsn", (2, 1, 8, 8)),
    ("ncsnv2", (2, 3, 16, 16)), ("ncsnv2_deeper", (1, 3, 32, 32)), ("ncsnv2_deepest", (1, 3, 64, 64)),
])
def test_refinenet_keeps_the_input_shape_and_backpropagates(variant, shape):
    conditional = NCSN_VARIANTS[variant]["conditional"]
    net = NCSNRefineNet(in_channels=shape[1], ngf=4, num_classes=5 if conditional else None, variant=variant)
    x = torch.randn(*shape, requires_grad=True)
    y = torch.randint(0, 5, (shape[0],)) if conditional else None
    out = net(x, y)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters())


def test_ncsn_conditions_on_the_level_per_sample():
    net = NCSNRefineNet(in_channels=1, ngf=8, num_classes=4, variant="ncsn")
    perturb_(net, scale=0.05)
    x = torch.randn(2, 1, 16, 16)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([3, 3]))
    assert not torch.allclose(a, b)
    c = net(x, torch.tensor([0, 3]))  # instance norm: no mixing across the batch
    torch.testing.assert_close(c[0], a[0])
    torch.testing.assert_close(c[1], b[1])


def test_ncsnv2_divides_by_sigma_and_rescales_the_input():
    """NCSNv2 Technique 3: s_θ(x, σ) = s_θ(x)/σ; rescale_input feeds 2x − 1 (data in [0, 1])."""
    plain = NCSNRefineNet(3, 8, None, "ncsnv2")
    scaled = NCSNRefineNet(3, 8, None, "ncsnv2", scale_by_sigma=True, rescale_input=True)
    scaled.load_state_dict(plain.state_dict())
    x, sigma = torch.rand(2, 3, 8, 8), torch.tensor([0.01, 50.0])
    torch.testing.assert_close(scaled(x, sigma=sigma), plain(2 * x - 1) / sigma[:, None, None, None])
    with pytest.raises(ValueError, match="sigma"):
        scaled(x)


def test_variant_and_level_errors():
    with pytest.raises(ValueError, match="variant must be one of"):
        NCSNRefineNet(variant="ncsnv3")
    with pytest.raises(ValueError, match="num_classes=L"):
        NCSNRefineNet(num_classes=None, variant="ncsn")
    with pytest.raises(ValueError, match="unconditional"):
        NCSNRefineNet(num_classes=10, variant="ncsnv2")
    with pytest.raises(ValueError, match="level index y"):
        NCSNRefineNet(1, 4, 3, "ncsn")(torch.randn(1, 1, 8, 8))


# ------------------------------------------------------------------ official checkpoints
def official_state(variant: str, seed: int = 0, prefix: str = "module.") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {prefix + k: torch.randn(shape, generator=g) for k, shape in OFFICIAL_KEYS[variant]["state"]}


def net_for(variant: str) -> NCSNRefineNet:
    spec = OFFICIAL_KEYS[variant]
    return NCSNRefineNet(spec["in_channels"], spec["ngf"], spec["num_classes"], variant)


@pytest.mark.parametrize("variant", sorted(OFFICIAL_KEYS))
def test_official_state_dicts_convert_key_for_key(variant):
    state = official_state(variant)
    net = net_for(variant)
    converted = convert_official_state_dict(state, variant)
    net.load_state_dict(converted, strict=True)  # every key and shape matches, none left over
    # spot checks of the three renamed containers
    names = {"ncsnv2_deepest": ("res31", "refine31", 2)}.get(variant, ("res3", "refine2", 1))
    torch.testing.assert_close(net.stages[3 if variant == "ncsnv2_deepest" else 2][0].conv1.weight,
                               state[f"module.{names[0]}.0.conv1.weight"])
    torch.testing.assert_close(net.refines[names[2]].output_convs.blocks[0][1]["conv"].weight,
                               state[f"module.{names[1]}.output_convs.1_2_conv.weight"])
    torch.testing.assert_close(net.refines[0].adapt_convs[0].blocks[1][0]["conv"].weight,
                               state["module.refine1.adapt_convs.0.2_1_conv.weight"])
    assert "sigmas" not in converted


def test_load_official_weights_prefers_the_ema_and_checks_the_file(tmp_path):
    variant = "ncsnv2"
    model, ema = official_state(variant, seed=0), official_state(variant, seed=1, prefix="")
    path = tmp_path / "checkpoint_300000.pth"
    torch.save([model, {}, 10, 300000, {k: v for k, v in ema.items() if k != "sigmas"}], path)
    net = load_official_weights(net_for(variant), path)
    torch.testing.assert_close(net.begin_conv.weight, ema["begin_conv.weight"])
    net = load_official_weights(net_for(variant), path, ema=False)
    torch.testing.assert_close(net.begin_conv.weight, model["module.begin_conv.weight"])

    ncsn_path = tmp_path / "checkpoint.pth"
    torch.save([official_state("ncsn"), {}], ncsn_path)
    with pytest.raises(ValueError, match="no EMA"):
        load_official_weights(net_for("ncsn"), ncsn_path)
    load_official_weights(net_for("ncsn"), ncsn_path, ema=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_official_weights(net_for("ncsn"), tmp_path / "missing.pth")
    torch.save({"state_dict": {}}, tmp_path / "lightning.ckpt")
    with pytest.raises(ValueError, match="not an official"):
        load_official_weights(net_for("ncsn"), tmp_path / "lightning.ckpt")
