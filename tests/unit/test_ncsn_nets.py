"""NCSN / NCSNv2 networks: CondInstanceNorm++ maths, shapes, conditioning and the s(x)/σ option."""

import pytest
import torch

from diffzoo.networks.ncsn import CondInstanceNorm2dPlus, NCSNMLP, NCSNRefineNet


def perturb_(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Move every parameter off its initialisation (level embeddings start identical)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# ------------------------------------------------------------------ CondInstanceNorm++
def test_cond_instance_norm_pp_closed_form():
    """z_k = γ_k (x_k − μ_k)/s_k + β_k + α_k (μ_k − m)/v: each output channel has spatial std
    |γ_k| and spatial mean β_k + α_k (μ_k − m)/v."""
    norm = CondInstanceNorm2dPlus(6, num_classes=3, eps=1e-12)
    perturb_(norm)
    x = torch.randn(4, 6, 9, 7, dtype=torch.float64) * 3 + torch.randn(4, 6, 1, 1, dtype=torch.float64)
    norm = norm.double()
    y = torch.tensor([0, 2, 1, 2])
    z = norm(x, y)
    mu = x.mean((2, 3))
    m, v = mu.mean(1, keepdim=True), mu.std(1, unbiased=False, keepdim=True)
    gamma, beta, alpha = norm.gamma[y], norm.beta[y], norm.alpha[y]
    torch.testing.assert_close(z.mean((2, 3)), beta + alpha * (mu - m) / v)
    torch.testing.assert_close(z.std((2, 3), unbiased=False), gamma.abs())


def test_instance_norm_pp_is_unconditional():
    norm = CondInstanceNorm2dPlus(5, num_classes=None)
    assert norm.gamma.shape == (1, 5)
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(norm(x), norm(x, torch.tensor([7, 1, 0])))


# ------------------------------------------------------------------ MLP
def test_mlp_shapes_conditioning_and_errors():
    net = NCSNMLP(dim=2, hidden=32, num_layers=2, num_classes=10)
    x = torch.randn(16, 2)
    y = torch.randint(0, 10, (16,))
    assert net(x, y).shape == (16, 2)
    # identical at initialisation (gains 1, shifts 0), level-dependent once trained/perturbed
    torch.testing.assert_close(net(x, torch.zeros_like(y)), net(x, torch.full_like(y, 9)))
    perturb_(net)
    assert not torch.allclose(net(x, torch.zeros_like(y)), net(x, torch.full_like(y, 9)))
    with pytest.raises(ValueError, match="level index y"):
        net(x)
    with pytest.raises(ValueError, match="num_layers"):
        NCSNMLP(num_layers=0)


def test_mlp_scale_by_sigma_divides_the_output():
    base = NCSNMLP(dim=3, hidden=16, num_classes=None)
    scaled = NCSNMLP(dim=3, hidden=16, num_classes=None, scale_by_sigma=True)
    scaled.load_state_dict(base.state_dict())
    x, sigma = torch.randn(5, 3), torch.tensor([0.1, 1.0, 2.0, 5.0, 50.0])
    torch.testing.assert_close(scaled(x, sigma=sigma), base(x) / sigma[:, None])
    with pytest.raises(ValueError, match="sigma"):
        scaled(x)


# ------------------------------------------------------------------ RefineNet
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32), (1, 3, 15, 17)])
def test_refinenet_keeps_the_input_shape_and_backpropagates(shape):
    net = NCSNRefineNet(in_channels=shape[1], ngf=8, num_classes=5)
    x = torch.randn(*shape, requires_grad=True)
    y = torch.randint(0, 5, (shape[0],))
    out = net(x, y)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters())


def test_refinenet_conditioning_on_the_level():
    net = NCSNRefineNet(in_channels=1, ngf=8, num_classes=4)
    perturb_(net, scale=0.05)
    x = torch.randn(2, 1, 16, 16)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([3, 3]))
    assert not torch.allclose(a, b)
    # sample i's output depends only on its own level (instance norm: no batch mixing)
    c = net(x, torch.tensor([0, 3]))
    torch.testing.assert_close(c[0], a[0])
    torch.testing.assert_close(c[1], b[1])


def test_refinenet_ncsnv2_option_is_unconditional_over_sigma():
    """NCSNv2 (Technique 3): InstanceNorm++ without level parameters, output s_θ(x)/σ."""
    v2 = NCSNRefineNet(in_channels=3, ngf=8, num_classes=None, scale_by_sigma=True)
    v1 = NCSNRefineNet(in_channels=3, ngf=8, num_classes=None, scale_by_sigma=False)
    v1.load_state_dict(v2.state_dict())
    x = torch.randn(2, 3, 8, 8)
    sigma = torch.tensor([0.01, 50.0])
    torch.testing.assert_close(v2(x, sigma=sigma), v1(x) / sigma[:, None, None, None])
    cond = NCSNRefineNet(in_channels=3, ngf=8, num_classes=232)
    n_norm_params = sum(p.numel() for m in cond.modules() if isinstance(m, CondInstanceNorm2dPlus) for p in m.parameters())
    extra = sum(p.numel() for p in cond.parameters()) - sum(p.numel() for p in v2.parameters())
    assert extra == n_norm_params * 231 // 232  # only the norms grow with L
