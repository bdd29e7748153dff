"""The diagonal Gaussian posterior ``q(z | x) = N(μ, diag σ²)`` of a KL-regularised autoencoder
(Kingma & Welling 2014, App. B; LDM §3.1 and CompVis ``DiagonalGaussianDistribution``)."""

from __future__ import annotations

import math

import torch

__all__ = ["DiagonalGaussian", "LOGVAR_CLAMP"]

# CompVis ldm/modules/distributions/distributions.py clamps the predicted log-variance to this range.
LOGVAR_CLAMP = (-30.0, 20.0)


class DiagonalGaussian:
    """``N(mean, diag exp(logvar))`` over latents ``[B, C, h, w]``.

    Built from the encoder's ``moments`` ``[B, 2C, h, w]``: the first ``C`` channels are the mean,
    the last ``C`` the log-variance (clamped to :data:`LOGVAR_CLAMP`, as the reference code).
    """

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = logvar.clamp(*LOGVAR_CLAMP)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = μ + σ ε``, ``ε ~ N(0, I)`` (the reparameterisation, Kingma & Welling eq. 10) → ``[B, C, h, w]``."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        """The posterior mean ``μ`` ``[B, C, h, w]``."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """``KL(q ‖ N(0, I))`` per sample ``[B]``: ``½ Σ (μ² + σ² − 1 − log σ²)`` over C, h, w
        (Kingma & Welling App. B, the negative of its eq. 10's first term)."""
        return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar).sum(dim=(1, 2, 3))

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        """``−log q(z)`` per sample ``[B]``: ``½ Σ (log 2π + log σ² + (z − μ)²/σ²)``."""
        return 0.5 * (math.log(2.0 * math.pi) + self.logvar + (z - self.mean).pow(2) / self.var).sum(dim=(1, 2, 3))
