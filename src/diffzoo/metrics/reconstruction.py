"""Reconstruction quality of a first-stage autoencoder (LDM App. D.2, Table 8: rFID, PSNR, SSIM of
reconstructions of held-out images).

* :func:`psnr` — ``10 log₁₀(R² / MSE)`` per image, ``R`` the data range (2 for ``[−1, 1]``).
* :func:`ssim` — Wang et al. 2004 ("Image quality assessment: from error visibility to structural
  similarity"), eq. 13 with the paper's settings (§III-C): an 11 × 11 circular-symmetric Gaussian
  window of σ = 1.5, ``K₁ = 0.01``, ``K₂ = 0.03``, ``C_i = (K_i R)²``; local statistics over the
  window's valid positions (no padding), averaged over positions and channels (the mean SSIM of
  eq. 17), per image.
* :func:`reconstruction_fid` (rFID) — the Fréchet distance between the features of the held-out
  images and of their reconstructions, in any of the project's feature spaces
  (:mod:`diffzoo.metrics.features`: a data set's own classifier offline, Inception for RGB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..utils.images import to_uint8
from .features import FeatureExtractor, extract_features
from .fid import feature_statistics, frechet_distance

__all__ = ["psnr", "ssim", "gaussian_window", "reconstruction_fid", "ReconstructionReport", "evaluate_reconstruction",
           "SSIM_WINDOW", "SSIM_SIGMA", "SSIM_K1", "SSIM_K2"]

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03  # Wang et al. 2004, §III-C
DATA_RANGE = 2.0  # images in [−1, 1]


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log₁₀(R² / mean((x − y)²))`` of ``[B, C, H, W]`` pairs → ``[B]`` (dB;
    ``inf`` for identical images)."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised ``size × size`` Gaussian window ``w`` (Σ w = 1), float64 ``[size, size]``."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r.pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE, window: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004, eq. 13 and 17) of ``[B, C, H, W]`` pairs → ``[B]``; ``H, W ≥ window``.

    Per window position, with Gaussian-weighted means ``μ``, variances ``σ²`` and covariance ``σ_xy``
    (eq. 14–16): ``SSIM = (2 μ_x μ_y + C₁)(2 σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂))``.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim takes two [B, C, H, W] batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"ssim needs images of at least {window}x{window} (its window), got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    w = gaussian_window(window, sigma).to(x.device)[None, None].repeat(c, 1, 1, 1)
    x, y = x.double(), y.double()

    def filt(t: torch.Tensor) -> torch.Tensor:  # valid positions only, per channel
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x ** 2   # eq. 15 with Gaussian weights
    var_y = filt(y * y) - mu_y ** 2
    cov = filt(x * y) - mu_x * mu_y   # eq. 16
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def reconstruction_fid(extractor: FeatureExtractor, images: torch.Tensor, reconstructions: torch.Tensor,
                       batch_size: int = 256) -> float:
    """rFID: Fréchet distance (Heusel et al. 2017, eq. 6) between ``extractor`` features of held-out
    ``images`` and of their ``reconstructions`` (both ``[N, C, H, W]`` in ``[−1, 1]``, quantised to
    uint8 as every diffzoo metric input), N ≥ 2."""
    a = extract_features(extractor, to_uint8(images), batch_size).features
    b = extract_features(extractor, to_uint8(reconstructions), batch_size).features
    return frechet_distance(feature_statistics(a), feature_statistics(b))


@dataclass
class ReconstructionReport:
    """Mean PSNR (dB) and SSIM over ``n`` held-out images (SSIM ``None`` for images smaller than its
    window), rFID in ``space`` (``None`` without an extractor). Names carry the count and space as
    the other metrics: see :meth:`as_metrics`."""

    psnr: float
    ssim: float | None
    rfid: float | None
    n: int
    space: str | None

    def as_metrics(self) -> dict[str, float]:
        """``{"psnr": …, "ssim": …, "rfid_<space><n>": …}`` (e.g. ``rfid_fashion_mnist1000``)."""
        out = {"psnr": self.psnr}
        if self.ssim is not None:
            out["ssim"] = self.ssim
        if self.rfid is not None:
            out[f"rfid_{self.space}{self.n}"] = self.rfid
        return out

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_reconstruction(autoencoder, images: torch.Tensor, extractor: FeatureExtractor | None = None,
                            batch_size: int = 100) -> ReconstructionReport:
    """Reconstruct held-out ``images`` ``[N, C, H, W]`` in ``[−1, 1]`` with ``autoencoder``
    (``decode(encode(x))``; a KL autoencoder through its posterior mean) and measure them.
    The reconstructions are quantised to uint8 before PSNR / SSIM, as a saved PNG would be."""
    was_training = autoencoder.training
    autoencoder.eval()
    device = next(autoencoder.parameters()).device
    recs = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i: i + batch_size].to(device)
        z = autoencoder.posterior(x).mode() if hasattr(autoencoder, "posterior") else autoencoder.encode(x)
        recs.append(autoencoder.decode(z).clamp(-1, 1).cpu())
    autoencoder.train(was_training)
    rec = to_uint8(torch.cat(recs)).float() / 127.5 - 1
    real = to_uint8(images).float() / 127.5 - 1
    rfid = reconstruction_fid(extractor, real, rec) if extractor is not None else None
    s = float(ssim(real, rec).mean()) if min(real.shape[-2:]) >= SSIM_WINDOW else None
    return ReconstructionReport(float(psnr(real, rec).mean()), s, rfid, int(images.shape[0]), getattr(extractor, "space", None))
