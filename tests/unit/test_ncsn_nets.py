"""NCSN / NCSNv2 score MLP: conditioning on the level and the s(x)/σ option (image nets: test_ncsn_refinenet.py)."""

import pytest
import torch

from diffzoo.networks.ncsn import NCSNMLP


def perturb_(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Move every parameter off its initialisation (level embeddings start identical)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


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
