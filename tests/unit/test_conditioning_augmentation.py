"""Conditioning augmentation of a cascade's low-resolution input (CDM §3.1–3.2, Imagen §2.4) against
closed forms: the Gaussian kernel, the forward-process marginal at level s, the blur rate, and the
equality of the truncated and non-truncated marginals under an exact low-resolution model."""

import math

import pytest
import torch

from diffzoo.data.downsampled import area_downsample
from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.denoisers import mixture_denoiser
from diffzoo.errors import ConfigError
from diffzoo.objectives.conditioning_augmentation import (
    ConditioningAugmentation,
    GaussianBlur,
    GaussianNoiseAugmentation,
    gaussian_blur,
    gaussian_kernel1d,
)
from diffzoo.samplers import ddpm
from diffzoo.samplers.truncated import ancestral_until
from diffzoo.schedules import DiscreteSchedule, linear_betas

T = 1000


@pytest.fixture(scope="module")
def schedule():
    return DiscreteSchedule(linear_betas(T, 1e-4, 0.02))


def _alpha_sigma_at_index(k: int, steps: int = T, beta_end: float = 0.02) -> tuple[float, float]:
    """DDPM eq. 4 from the β table itself: ᾱ_k = Π_{i ≤ k} (1 − β_i), β linear from 1e-4 (DDPM §4)."""
    betas = torch.linspace(1e-4, beta_end, steps, dtype=torch.float64)
    abar = float(torch.prod(1 - betas[: k + 1]))
    return math.sqrt(abar), math.sqrt(1 - abar)


# ---------------------------------------------------------------------- blur
def test_gaussian_kernel_is_normalised_and_matches_the_closed_form():
    k = gaussian_kernel1d(3, 0.6)  # unCLIP App. C: kernel 3, sigma 0.6
    a = math.exp(-1 / (2 * 0.6**2))
    expected = torch.tensor([a, 1.0, a], dtype=torch.float64) / (1 + 2 * a)
    assert torch.allclose(k, expected, atol=1e-12)
    for size, sigma in [(5, 1.3), (7, 0.4)]:
        assert abs(float(gaussian_kernel1d(size, sigma).sum()) - 1) < 1e-12
    with pytest.raises(ConfigError, match="kernel_size"):
        gaussian_kernel1d(4, 1.0)


def test_blur_of_an_impulse_is_the_outer_product_kernel_and_constants_stay_constant():
    x = torch.zeros(2, 1, 9, 9, dtype=torch.float64)
    x[:, :, 4, 4] = 1.0
    sigma = torch.tensor([0.6, 1.1])
    out = gaussian_blur(x, sigma, 5)
    for b in range(2):
        k = gaussian_kernel1d(5, float(sigma[b]))
        assert torch.allclose(out[b, 0, 2:7, 2:7], torch.outer(k, k), atol=1e-12)
        assert abs(float(out[b].sum()) - 1) < 1e-12
    const = torch.full((3, 2, 6, 6), 0.37)
    assert torch.allclose(gaussian_blur(const, torch.tensor([0.5, 0.6, 2.0]), 3), const, atol=1e-6)


def test_blur_hits_half_the_training_batch_within_three_sigma_and_never_at_sampling():
    B, p = 4000, 0.5  # CDM §3.1: 50 % of the training examples
    z = torch.randn(B, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    blur = GaussianBlur(prob=p, sigma=(0.4, 0.6), kernel_size=3)
    out, mask = blur.train_draw(z, torch.Generator().manual_seed(1))
    three_sigma = 3 * math.sqrt(p * (1 - p) / B)
    assert abs(float(mask.float().mean()) - p) < three_sigma
    changed = (out != z).flatten(1).any(1)
    assert torch.equal(changed, mask)  # exactly the drawn examples are blurred
    aug = ConditioningAugmentation(blur=blur)
    assert torch.equal(aug.sample(z).low_res, z) and torch.equal(blur.sample(z), z)  # CDM §3.1: none at inference


# ---------------------------------------------------------------------- Gaussian noise
def test_noised_low_res_has_the_forward_process_moments_at_level_s(schedule):
    k = 333  # level s = 333/999 lands on index 333 of the 1000-step table
    s = k / (T - 1)
    alpha, sigma = _alpha_sigma_at_index(k)
    aug = GaussianNoiseAugmentation(schedule, sample_level=s)
    c = 0.6
    z = torch.full((20000, 1, 2, 2), c, dtype=torch.float64)
    out = aug.sample(z, generator=torch.Generator().manual_seed(3))
    n = out.low_res.numel()
    assert torch.allclose(out.aug_level, torch.full((20000,), s, dtype=torch.float32))
    # q(z_s | z) = N(α z, σ² I) (DDPM eq. 4): sample mean within 5 standard errors, variance within 5 of its own
    assert abs(float(out.low_res.mean()) - alpha * c) < 5 * sigma / math.sqrt(n)
    assert abs(float(out.low_res.var()) - sigma**2) < 5 * sigma**2 * math.sqrt(2 / n)
    assert torch.equal(aug.sample(z, level=0.0).low_res, z)  # level 0: no noise at all


def test_training_levels_are_amortised_over_the_range_with_a_point_mass_at_zero(schedule):
    aug = GaussianNoiseAugmentation(schedule, train_levels=(0.1, 0.5), p_zero=0.2)
    x = torch.full((8000, 1, 2, 2), -0.3, dtype=torch.float64)
    out = aug.train_draw(x, torch.Generator().manual_seed(4))
    zero = out.aug_level == 0
    assert abs(float(zero.float().mean()) - 0.2) < 3 * math.sqrt(0.2 * 0.8 / 8000)
    assert torch.equal(out.low_res[zero], x[zero])
    lv = out.aug_level[~zero].double()
    assert float(lv.min()) >= 0.1 and float(lv.max()) <= 0.5
    assert abs(float(lv.mean()) - 0.3) < 4 * (0.4 / math.sqrt(12)) / math.sqrt(len(lv))
    # every noised example is α(t_s) x + σ(t_s) ε with ε standard normal (pooled over levels)
    t = aug.time_of(lv)
    a, sg = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
    eps = (out.low_res[~zero].flatten(1) - a * x[~zero].flatten(1)) / sg
    assert abs(float(eps.mean())) < 5 / math.sqrt(eps.numel())
    assert abs(float(eps.var()) - 1) < 5 * math.sqrt(2 / eps.numel())


def test_augmentation_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="train_levels"):
        GaussianNoiseAugmentation(train_levels=(0.6, 0.2))
    with pytest.raises(ConfigError, match="sample_level"):
        GaussianNoiseAugmentation(sample_level=1.5)
    with pytest.raises(ConfigError, match="blur.prob"):
        GaussianBlur(prob=2.0)
    with pytest.raises(ConfigError, match="trained without noise"):
        ConditioningAugmentation().sample(torch.zeros(2, 1, 2, 2), level=0.3)


# ---------------------------------------------------------------------- truncated vs non-truncated
@pytest.mark.parametrize("N", [8000, pytest.param(40000, marks=pytest.mark.slow)])
def test_truncated_and_non_truncated_augmentation_have_the_same_marginal(N):
    """CDM §3.2: with an exact low-resolution model, stopping its reverse chain at t_s (truncated) and
    sampling z_0 fully then corrupting it to z_s (non-truncated) both give q(z_s) = Σ π_k N(α μ_k, α² s_k² + σ²).
    A 200-step chain (β up to 0.1) keeps the test short; the 40 000-chain run (slow) resolves a stop 12 steps
    off, the fast one a stop about 30 steps off."""
    steps = 200
    schedule = DiscreteSchedule(linear_betas(steps, 1e-4, 0.1))
    gm = GaussianMixture([0.3, 0.7], [[-1.0], [1.0]], [0.2, 0.3])
    den = mixture_denoiser(gm, schedule, conditional=False)
    k = 33
    s = k / (steps - 1)
    alpha, sigma = _alpha_sigma_at_index(k, steps, 0.1)
    x_T = torch.randn(N, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    truncated = ancestral_until(den, x_T, float(k), clip_x0=False, generator=torch.Generator().manual_seed(6))
    z0 = ddpm(den, x_T, variance="fixedsmall", clip_x0=False, generator=torch.Generator().manual_seed(7))
    aug = GaussianNoiseAugmentation(schedule)
    non_truncated = aug.sample(z0, level=s, generator=torch.Generator().manual_seed(8)).low_res

    w, mu, sd = torch.tensor([0.3, 0.7]), torch.tensor([-1.0, 1.0]), torch.tensor([0.2, 0.3])
    mean = float((w * alpha * mu).sum())
    var = float((w * (alpha**2 * sd**2 + sigma**2 + (alpha * mu) ** 2)).sum()) - mean**2
    comp_sd = torch.sqrt(alpha**2 * sd**2 + sigma**2)
    p_neg = float((w * 0.5 * (1 + torch.erf((0 - alpha * mu) / (comp_sd * math.sqrt(2))))).sum())
    for z in (truncated, non_truncated):
        z = z.flatten()
        # statistical tolerance (5 standard errors) plus 0.005 for the chain's discretisation 
        assert abs(float(z.mean()) - mean) < 5 * math.sqrt(var / N) + 0.005
        assert abs(float(z.var()) - var) < 5 * var * math.sqrt(2 / N) + 0.005
        assert abs(float((z < 0).double().mean()) - p_neg) < 5 * math.sqrt(p_neg * (1 - p_neg) / N) + 0.005


# ---------------------------------------------------------------------- area downsampling
def test_area_downsampling_is_the_block_mean_and_composes():
    x = torch.randn(3, 2, 32, 32, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    d8 = area_downsample(x, 8)
    assert torch.allclose(d8[1, 0, 2, 3], x[1, 0, 8:12, 12:16].mean(), atol=1e-12)
    assert torch.allclose(area_downsample(area_downsample(x, 16), 8), d8, atol=1e-12)
    with pytest.raises(ValueError, match="multiple"):
        area_downsample(x, 5)
