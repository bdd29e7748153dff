"""The PatchGAN discriminator of pix2pix (Isola et al. 2017, §3.2.2 and App. 6.1.2, "70×70
PatchGAN": C64-C128-C256-C512, then a 1-channel conv), as taming-transformers'
``NLayerDiscriminator`` builds it for VQGAN and the LDM autoencoders (``n_layers=3``; vq-f8 uses 2).

Layout: ``Conv4×4/2(C→ndf) → LeakyReLU(0.2)``; for ``n = 1 … n_layers−1``:
``Conv4×4/2 (bias-free) → BatchNorm → LeakyReLU(0.2)`` with widths ``ndf·min(2ⁿ, 8)``; then
``Conv4×4/1 → BatchNorm → LeakyReLU(0.2)`` at ``ndf·min(2^n_layers, 8)`` and ``Conv4×4/1 → 1``
logit per patch. Weights are initialised as taming's ``weights_init`` (conv N(0, 0.02²),
BatchNorm scale N(1, 0.02²), bias 0).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["NLayerDiscriminator"]


class NLayerDiscriminator(nn.Module):
    """Images ``[B, in_channels, H, W]`` → patch logits ``[B, 1, H', W']`` (H = 256, n_layers = 3:
    30 × 30; H = 32: 2 × 2).

    Args:
        in_channels: image channels (``disc_in_channels``).
        ndf: width of the first layer (64 as pix2pix / taming).
        n_layers: stride-2 layers (3 as LDM's kl / vq-f4 losses; 2 in vq-f8's).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"objective.disc_num_layers must be >= 1, got {n_layers}")
        self.in_channels = int(in_channels)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
                   nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.main = nn.Sequential(*layers)
        self.apply(_weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _weights_init(m: nn.Module) -> None:
    # taming/modules/discriminator/model.py weights_init
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
