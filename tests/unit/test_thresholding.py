"""Imagen's static and dynamic thresholding of x̂₀ (Saharia et al. 2022, §2.3) as denoiser transforms
and as the ``sampler.threshold`` setting of every sampler."""

import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.denoisers import ClipX0, Denoiser, DynamicThreshold, X0Transformed, mixture_denoiser, x0_threshold
from diffzoo.errors import ConfigError
from diffzoo.guidance import ClassifierFreeGuidance
from diffzoo.samplers import SamplerSpec
from diffzoo.schedules import DiscreteSchedule, linear_betas


def test_dynamic_threshold_leaves_in_range_x0_unchanged():
    x0 = torch.rand(4, 3, 5, 5) * 2 - 1  # every pixel in [−1, 1]: s = max(percentile, 1) = 1
    assert torch.equal(DynamicThreshold(99.5)(x0), x0)


def test_dynamic_threshold_rescales_by_the_per_sample_percentile():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 1, 16, 16, generator=g) * torch.tensor([0.3, 2.0, 5.0]).view(3, 1, 1, 1)
    x0[0] = x0[0].clamp(-1, 1)  # sample 0 inside the range
    out = DynamicThreshold(90.0)(x0)
    assert float(out.abs().max()) <= 1.0 + 1e-6
    for b in range(3):
        s = max(float(torch.quantile(x0[b].abs().flatten(), 0.9)), 1.0)  # Imagen §2.3
        assert torch.allclose(out[b], x0[b].clamp(-s, s) / s, atol=1e-6)
    assert torch.equal(out[0], x0[0])  # the sample inside [−1, 1] is untouched; the others are not
    # percentile 100: s = max |x̂₀| — a pure rescale, no pixel saturates
    full = DynamicThreshold(100.0)(x0[1:2])
    assert torch.allclose(full, x0[1:2] / x0[1:2].abs().max(), atol=1e-6)


def test_dynamic_threshold_on_another_data_range():
    x0 = torch.tensor([[[[-1.0, 0.0, 0.5, 1.0, 3.0]]]])  # data in [0, 1]: centre 0.5, half-width 0.5
    out = DynamicThreshold(100.0, 0.0, 1.0)(x0)
    y = (x0 - 0.5) / 0.5
    assert torch.allclose(out, 0.5 + 0.5 * y / y.abs().max())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_x0_threshold_kinds_and_errors():
    assert x0_threshold("none", (-1, 1)) is None
    assert isinstance(x0_threshold("static", (-1, 1)), ClipX0)
    assert isinstance(x0_threshold("dynamic", (-1, 1), 95), DynamicThreshold)
    with pytest.raises(ValueError, match="sampler.threshold must be one of"):
        x0_threshold("soft", (-1, 1))
    with pytest.raises(ValueError, match="threshold_percentile"):
        DynamicThreshold(0.0)


def _exploding_denoiser():
    """A DDPM ε-model whose x̂₀ = x/α − (σ/α) ε̂ leaves [−1, 1] early in the chain (ε̂ = −x)."""
    schedule = DiscreteSchedule(linear_betas(100))
    return Denoiser(lambda x, tau: -x, schedule, "eps")


def test_sampler_threshold_setting_every_sampler_takes():
    x_T = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    d = _exploding_denoiser()
    plain = SamplerSpec("ddim", 5)(d, x_T)
    assert float(plain.abs().max()) > 1.5  # without thresholding the final x̂₀ leaves the range
    static = SamplerSpec("ddim", 5, threshold="static")(d, x_T)
    assert torch.equal(static, SamplerSpec("ddim", 5, clip_x0=True)(d, x_T))  # static = clip_denoised
    dynamic = SamplerSpec("ddim", 5, threshold="dynamic", threshold_percentile=95)(d, x_T)
    assert float(dynamic.abs().max()) <= 1.0 + 1e-6 and not torch.equal(dynamic, static)
    ancestral = SamplerSpec("ddpm", 5, clip_x0=False, threshold="dynamic")(d, x_T, generator=torch.Generator().manual_seed(0))
    assert float(ancestral.abs().max()) <= 1.0 + 1e-6  # the last ancestral step returns the thresholded x̂₀


def test_threshold_sits_on_top_of_classifier_free_guidance():
    """Imagen thresholds the x̂₀ of the *guided* ε (its CFG combination happens first)."""
    mix = GaussianMixture([0.5, 0.5], [[2.0, 0.0], [-2.0, 0.0]], 0.1, labels=[0, 1])
    base = mixture_denoiser(mix, DiscreteSchedule(linear_betas(100)))
    guided = ClassifierFreeGuidance(scale=3.0).wrap(base)
    transformed = guided.with_x0_transform(DynamicThreshold(99.5))
    assert isinstance(transformed, X0Transformed) and transformed.inner is guided


def test_settings_validate_round_trip_and_are_recorded():
    spec = SamplerSpec("ddim", 10, eta=0.0, threshold="dynamic", threshold_percentile=95)
    assert SamplerSpec.of(spec.to_config()) == spec
    assert spec.describe()["threshold"] == "dynamic" and spec.describe()["threshold_percentile"] == 95
    assert spec.with_steps(20).settings == spec.settings
    assert SamplerSpec("ddim", 10).to_config() == SamplerSpec("ddim", 10, threshold="none").to_config()  # defaults stay out
    with pytest.raises(ConfigError, match="sampler.threshold='soft'"):
        SamplerSpec("ddim", 10, threshold="soft")
    with pytest.raises(ConfigError, match="sampler.threshold_percentile=0"):
        SamplerSpec("ddim", 10, threshold="dynamic", threshold_percentile=0)
    with pytest.raises(ConfigError, match="threshold_percentile"):  # listed among the valid settings
        SamplerSpec("ddim", 10, bogus=1)


def test_command_line_settings_resolve_onto_the_stored_sampler():
    """``diffzoo-sample sampler.threshold=dynamic`` changes the checkpoint's sampler; ``null`` keeps it."""
    stored = SamplerSpec("ddpm", 50, variance="fixedsmall")
    changed = SamplerSpec.resolve(stored, {"steps": None, "threshold": "dynamic", "threshold_percentile": None})
    assert changed == SamplerSpec("ddpm", 50, variance="fixedsmall", threshold="dynamic")
    assert SamplerSpec.resolve(stored, {"steps": None, "threshold": None, "threshold_percentile": None}) is stored
    whole = SamplerSpec.resolve(stored, {"name": "ddim", "steps": 5, "threshold": "static", "threshold_percentile": None})
    assert whole == SamplerSpec("ddim", 5, threshold="static")
