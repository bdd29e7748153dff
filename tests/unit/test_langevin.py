"""Langevin and annealed Langevin dynamics (NCSN Alg. 1) with exact Gaussian-mixture scores."""

import math

import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.samplers.langevin import annealed_langevin, langevin

# NCSN §3 / toy code (GMMDistAnneal): 0.8·N((5,5), I) + 0.2·N((−5,−5), I)
WEIGHTS, MEANS = [0.8, 0.2], [[5.0, 5.0], [-5.0, -5.0]]
N_SAMPLES = 1280


def ncsn_toy_score(gm: GaussianMixture):
    """The NCSN toy's score at level σ: the mixture with component std σ (not √(1 + σ²)).

    One mixture with unit components serves every level σ ≥ 1: under x = x_0 + s ε a unit
    component becomes N(μ, (1 + s²) I), so s = √(σ² − 1) gives std σ exactly, and σ = 1 (s = 0)
    is the data score itself.
    """

    def score(x, sigma):
        s = torch.sqrt(torch.clamp(sigma.double() ** 2 - 1.0, min=0.0))
        return gm.score(x, alpha=1.0, sigma=s).to(x.dtype)

    return score


def fraction_in_main_mode(x):
    return (x.sum(-1) > 0).double().mean().item()


def binomial_sd(p, n=N_SAMPLES):
    return math.sqrt(p * (1 - p) / n)


def test_toy_score_is_the_mixture_with_component_std_sigma():
    gm = GaussianMixture(WEIGHTS, MEANS, covs=1.0)
    x = torch.randn(7, 2, dtype=torch.float64) * 4
    for sigma in (1.0, 2.5, 20.0):
        direct = GaussianMixture(WEIGHTS, MEANS, covs=sigma).score(x)
        torch.testing.assert_close(ncsn_toy_score(gm)(x, torch.full((7,), sigma, dtype=torch.float64)), direct)


def test_plain_langevin_leaves_the_weights_wrong():
    """NCSN Fig. 3: Langevin with the exact data score (lr 0.1, 1000 steps, paper convention)
    from U[−8, 8]² keeps the initial 50/50 split — it cannot move mass between the modes."""
    gm = GaussianMixture(WEIGHTS, MEANS, covs=1.0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(N_SAMPLES, 2, generator=g) * 16 - 8
    init_frac = fraction_in_main_mode(x0)
    x = langevin(ncsn_toy_score(gm), x0, n_steps=1000, step_size=0.1, sigma=1.0, step_convention="paper", generator=g)
    frac = fraction_in_main_mode(x)
    assert abs(frac - 0.5) < 4 * binomial_sd(0.5)
    assert abs(frac - 0.8) > 10 * binomial_sd(0.8)
    assert abs(frac - init_frac) < 0.02  # almost no sample changes mode


def test_annealed_langevin_recovers_the_weights():
    """NCSN Fig. 3: σ = exp(linspace(ln 20, 0, 10)), 100 steps per level, α = 0.1 (σ/σ_L)²
    (paper convention, no denoising) recovers the 0.8 weight."""
    gm = GaussianMixture(WEIGHTS, MEANS, covs=1.0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(N_SAMPLES, 2, generator=g) * 16 - 8
    sigmas = torch.exp(torch.linspace(math.log(20.0), 0.0, 10))
    x = annealed_langevin(ncsn_toy_score(gm), sigmas, x0, n_steps_each=100, step_lr=0.1, denoise=False,
                          step_convention="paper", generator=g)
    assert abs(fraction_in_main_mode(x) - 0.8) < 4 * binomial_sd(0.8)
    # and the samples sit on the modes: within-mode variance ≈ 1 per coordinate
    main = x[x.sum(-1) > 0]
    assert torch.allclose(main.mean(0), torch.tensor([5.0, 5.0]), atol=0.2)
    assert torch.allclose(main.var(0), torch.ones(2), atol=0.25)


@pytest.mark.parametrize("convention, step", [("code", 0.05), ("paper", 0.1)])
def test_conventions_differ_by_a_factor_two_in_the_step(convention, step):
    """On N(0, s²) the chain x ← (1 − c α/s²) x + √(2cα) z (c = 1 code, ½ paper) has stationary
    variance s²/(1 − cα/(2s²)); "code" at α equals "paper" at 2α."""
    s2, n = 2.0, 20000
    g = torch.Generator().manual_seed(3)
    score = lambda x, sigma: -x / s2  # noqa: E731
    x = langevin(score, torch.zeros(n, 1, dtype=torch.float64), n_steps=400, step_size=step, sigma=1.0,
                 step_convention=convention, generator=g)
    c = 1.0 if convention == "code" else 0.5
    expected = s2 / (1 - c * step / (2 * s2))
    assert abs(x.var().item() - expected) < 5 * expected * math.sqrt(2 / n)


def test_same_noise_gives_the_same_chain_in_both_conventions():
    gm = GaussianMixture(WEIGHTS, MEANS, covs=1.0)
    x0 = torch.randn(16, 2, dtype=torch.float64)
    sigmas = [3.0, 1.5, 1.0]
    a = annealed_langevin(ncsn_toy_score(gm), sigmas, x0, 5, 0.05, step_convention="code",
                          generator=torch.Generator().manual_seed(1))
    b = annealed_langevin(ncsn_toy_score(gm), sigmas, x0, 5, 0.1, step_convention="paper",
                          generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_denoise_is_tweedie_and_callback_counts_nfe():
    """The last step is x + σ_L² s(x, σ_L); for a Gaussian score −x/(1 + σ²) the output is the
    posterior mean. NFE = L · T + 1."""
    calls, seen = [], []

    def score(x, sigma):
        assert sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype
        calls.append(sigma[0].item())
        return -x / (1.0 + sigma[:, None] ** 2)

    sigmas = [4.0, 2.0, 0.5]
    x0 = torch.randn(8, 3, dtype=torch.float64)
    out = annealed_langevin(score, sigmas, x0, n_steps_each=4, step_lr=1e-3, denoise=True,
                            generator=torch.Generator().manual_seed(0), callback=seen.append)
    assert len(calls) == 3 * 4 + 1 and seen[-1]["nfe"] == 13 and [d["nfe"] for d in seen] == list(range(1, 14))
    assert [d["sigma"] for d in seen[:-1]] == [4.0] * 4 + [2.0] * 4 + [0.5] * 4
    x_last = seen[-2]["x"]
    torch.testing.assert_close(out, x_last * (1 - 0.25 / 1.25))  # x + σ²·(−x/(1 + σ²))
    nodenoise = annealed_langevin(score, sigmas, x0, 4, 1e-3, denoise=False, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(nodenoise, x_last)


def test_step_is_epsilon_sigma_squared_over_sigma_L_squared():
    """With a zero score and the code convention each level adds variance 2 α_i T."""
    sigmas, T, eps, n = [10.0, 1.0], 3, 1e-3, 40000
    x = annealed_langevin(lambda x, s: torch.zeros_like(x), sigmas, torch.zeros(n, 1, dtype=torch.float64), T, eps,
                          denoise=False, generator=torch.Generator().manual_seed(0))
    expected = 2 * T * eps * (100.0 + 1.0)
    assert abs(x.var().item() - expected) < 5 * expected * math.sqrt(2 / n)


def test_bad_arguments():
    score = lambda x, s: x  # noqa: E731
    with pytest.raises(ValueError, match="'code', 'paper'"):
        langevin(score, torch.zeros(2, 2), 1, 0.1, sigma=1.0, step_convention="half")
    with pytest.raises(ValueError, match="decreasing"):
        annealed_langevin(score, [1.0, 2.0], torch.zeros(2, 2))
