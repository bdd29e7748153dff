"""Perceptual distances for the first-stage autoencoder loss (LDM App. G: "L_rec … perceptual loss").

Kinds (``objective.perceptual``), each a module ``(x, x_rec) → d [B, 1, 1, 1]``:

* ``lpips`` — LPIPS-VGG (Zhang et al. 2018) through the ``lpips`` package, the loss of the paper's
  code (taming's ``LPIPS``). It needs torchvision's VGG16 ImageNet weights already on disk (they are
  downloaded at run time otherwise); this module refuses to download and says what is missing.
* ``random_features`` — the offline substitute: a fixed, seeded, randomly initialised conv net read
  as LPIPS reads VGG — features unit-normalised over channels, squared differences averaged over
  space and summed over layers (Zhang et al. 2018, eq. 1, with all linear weights ``w_l = 1``).
  Zhang et al. report that even random-weight networks' features track perceptual similarity
  better than pixel distances (their Fig. 4, "random" networks), which is why it is a usable
  stand-in; it is **not** LPIPS and numbers trained with it are not the paper's.
* ``none`` — no perceptual term (L1 only).

Whichever is used says so in one line (:attr:`description`), which the training module prints.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["PERCEPTUAL_KINDS", "make_perceptual", "RandomFeaturePerceptual", "LPIPSPerceptual", "NoPerceptual"]

PERCEPTUAL_KINDS = ("lpips", "random_features", "none")
_VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1 file name


def _normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # LPIPS eq. 1: unit-normalise each spatial feature vector over channels
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class RandomFeaturePerceptual(nn.Module):
    """A frozen random conv net as a perceptual distance (see the module docstring).

    Layers: ``Conv3×3(C→w₁) → ReLU``, then for each further width ``Conv3×3/2 → ReLU``; features are
    taken after every ReLU. Weights are Kaiming-normal from ``torch.Generator(seed)``, so the
    distance is the same on every machine and run.

    Args:
        in_channels: image channels. widths: the layers' widths. seed: weight seed.
    """

    def __init__(self, in_channels: int = 3, widths=(32, 64, 128), seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        layers, c = [], int(in_channels)
        for i, w in enumerate(widths):
            conv = nn.Conv2d(c, int(w), 3, stride=1 if i == 0 else 2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (c * 9)) ** 0.5)
                conv.bias.zero_()
            layers.append(nn.Sequential(conv, nn.ReLU()))
            c = int(w)
        self.layers = nn.ModuleList(layers)
        self.requires_grad_(False).eval()
        self.description = (f"perceptual loss: a fixed random-feature network (widths {list(widths)}, seed {seed}) "
                            "stands in for LPIPS-VGG (offline substitute, not the paper's loss)")

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in ``[−1, 1]`` → distances ``[B, 1, 1, 1]``."""
        d = x.new_zeros(x.shape[0], 1, 1, 1)
        a, b = x, x_rec
        for layer in self.layers:
            a, b = layer(a), layer(b)
            d = d + (_normalize(a) - _normalize(b)).pow(2).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        return d


class NoPerceptual(nn.Module):
    """No perceptual term: distance 0."""

    description = "perceptual loss: none (objective.perceptual=none; L1 reconstruction only)"

    def forward(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 1, 1, 1)


class LPIPSPerceptual(nn.Module):
    """LPIPS-VGG through the ``lpips`` package (extra ``lpips``); grey images are repeated to RGB.
    Refuses to run when torchvision's VGG16 weights are not on disk (it would download them)."""

    description = "perceptual loss: LPIPS-VGG (lpips package), as the paper's code"

    def __init__(self):
        super().__init__()
        try:
            import lpips
        except ImportError:
            raise ConfigError("objective.perceptual=lpips needs the lpips package: pip install 'diffzoo[lpips]'") from None
        hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" / _VGG16_FILE
        if not hub.is_file():
            raise ConfigError(f"objective.perceptual=lpips needs torchvision's VGG16 weights at {hub} (no download here); "
                              "use objective.perceptual=random_features offline")
        self.net = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, x_rec = x.expand(-1, 3, -1, -1), x_rec.expand(-1, 3, -1, -1)
        return self.net(x, x_rec)


def make_perceptual(kind: str, in_channels: int, seed: int = 0) -> nn.Module:
    """The perceptual distance of ``kind`` (one of :data:`PERCEPTUAL_KINDS`) for images with
    ``in_channels`` channels."""
    if kind not in PERCEPTUAL_KINDS:
        raise ConfigError(f"objective.perceptual={kind!r} is not one of {list(PERCEPTUAL_KINDS)}")
    if kind == "lpips":
        return LPIPSPerceptual()
    if kind == "random_features":
        return RandomFeaturePerceptual(in_channels, seed=seed)
    return NoPerceptual()
