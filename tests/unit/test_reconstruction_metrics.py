"""PSNR, SSIM (Wang et al. 2004) and rFID against closed forms."""

import math

import pytest
import torch
from torch import nn

from diffzoo.metrics.feature_types import Features
from diffzoo.metrics.reconstruction import evaluate_reconstruction, gaussian_window, psnr, reconstruction_fid, ssim


def test_psnr_of_a_constant_offset():
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    for c in (0.1, 0.02):
        torch.testing.assert_close(psnr(x, x + c), torch.full((3,), 10 * math.log10(4 / c ** 2), dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()


def test_gaussian_window_is_normalised_and_has_sigma_1_5():
    w = gaussian_window()
    assert w.shape == (11, 11) and math.isclose(float(w.sum()), 1.0, rel_tol=1e-12)
    r = torch.arange(11, dtype=torch.float64) - 5
    # the marginal's variance: sigma² = 1.5² up to the truncation at ±5 (3.3 sigma)
    var = float((w.sum(1) * r ** 2).sum())
    assert abs(var - 2.25) < 0.02


def test_ssim_closed_forms():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # constant images: sigma = 0 everywhere, so SSIM = (2ab + C1) / (a² + b² + C1) exactly
    a, b, c1 = 0.3, -0.4, (0.01 * 2) ** 2
    s = ssim(torch.full((1, 1, 12, 12), a), torch.full((1, 1, 12, 12), b))
    torch.testing.assert_close(s, torch.tensor([(2 * a * b + c1) / (a * a + b * b + c1)], dtype=torch.float64))
    # checkerboards s·cb and t·cb: every Gaussian-weighted local mean is ≈ 0 (the window's response at the
    # Nyquist frequency, ≈ exp(−π² σ² / 2) ≈ 1.5e-5), local variances s², t², covariance s·t, so
    # SSIM = (2 s t + C2) / (s² + t² + C2) up to ~1e-6
    i = torch.arange(16)
    cb = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float()[None, None]
    c2 = (0.03 * 2) ** 2
    for s_, t_ in ((0.8, 0.3), (0.6, -0.5)):
        want = (2 * s_ * t_ + c2) / (s_ * s_ + t_ * t_ + c2)
        assert abs(float(ssim(s_ * cb, t_ * cb)) - want) < 1e-4
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_ssim_matches_torchmetrics_on_the_valid_region():
    tm = pytest.importorskip("torchmetrics.functional.image")
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1)
    # torchmetrics pads by reflection and averages over the whole image; its SSIM map without the
    # 5-pixel border is the map at Wang et al.'s valid positions
    _, full = tm.structural_similarity_index_measure(y.double(), x.double(), data_range=2.0, reduction="none",
                                                     return_full_image=True)
    ref = full[..., 5:-5, 5:-5].flatten(1).mean(1)
    torch.testing.assert_close(ssim(x, y), ref.double(), rtol=1e-6, atol=1e-6)


class FlattenFeatures(nn.Module):
    """Features = the pixel bytes themselves (a known feature map for closed forms)."""

    space, identity, resize, feature_dim = "pixels", "flatten", "none", 16

    def forward(self, images):
        f = images.float().flatten(1)
        return Features(f, f[:, :2])


def test_rfid_of_a_shifted_set_is_the_squared_shift():
    torch.manual_seed(1)
    u8 = torch.randint(40, 200, (50, 1, 4, 4)).float()
    real = u8 / 127.5 - 1
    shifted = (u8 + 10) / 127.5 - 1   # every byte + 10: same covariance, mean moved by 10 in each of 16 dims
    assert math.isclose(reconstruction_fid(FlattenFeatures(), real, shifted), 16 * 10 ** 2, rel_tol=1e-6)
    assert reconstruction_fid(FlattenFeatures(), real, real) < 1e-6


def test_evaluate_reconstruction_of_a_perfect_autoencoder():
    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(()))

        def encode(self, x):
            return x

        def decode(self, z):
            return z

    x = (torch.randint(0, 256, (20, 1, 12, 12)).float() / 127.5 - 1)
    report = evaluate_reconstruction(Identity(), x)
    assert report.ssim == pytest.approx(1.0) and math.isinf(report.psnr) and report.rfid is None
    assert set(report.as_metrics()) == {"psnr", "ssim"}
    small = evaluate_reconstruction(Identity(), x[..., :8, :8])  # 8x8 digits: smaller than SSIM's window
    assert small.ssim is None and set(small.as_metrics()) == {"psnr"}
