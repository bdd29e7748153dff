"""DDPM ancestral sampling with the exact ε of a Gaussian mixture reproduces the mixture."""

import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.samplers import ddpm
from diffzoo.schedules import DiscreteSchedule, linear_betas, spaced_timesteps

MIXTURE = GaussianMixture(
    weights=[0.3, 0.7],
    means=[[-1.0, 0.5], [0.6, -0.4]],
    covs=[[[0.04, 0.01], [0.01, 0.02]], [[0.03, -0.005], [-0.005, 0.05]]],
)


def exact_eps_fn(schedule_full: DiscreteSchedule, gm: GaussianMixture):
    """ε*(x_t, t) = −σ_t ∇log p_t(x_t) for the original (un-respaced) schedule index t."""

    def eps_fn(x, t):
        return gm.eps(x, schedule_full.alpha(t), schedule_full.sigma(t)).to(x.dtype)

    return eps_fn


def assert_matches_mixture(x: torch.Tensor, gm: GaussianMixture):
    x = x.double()
    n = x.shape[0]
    # assign each sample to its most likely component (components are well separated)
    _, comp = gm._component_log_probs(x, 1.0, 0.0)[0].max(-1)
    for k in range(gm.num_components):
        sel = x[comp == k]
        frac = sel.shape[0] / n
        se = (gm.weights[k].item() * (1 - gm.weights[k].item()) / n) ** 0.5
        assert abs(frac - gm.weights[k].item()) < 4 * se, (k, frac)
        mean_se = (gm.covs[k].diagonal() / sel.shape[0]).sqrt()
        assert ((sel.mean(0) - gm.means[k]).abs() < 4 * mean_se + 2e-3).all(), (k, sel.mean(0))
        cov = torch.cov(sel.T)
        assert torch.allclose(cov, gm.covs[k], rtol=0.15, atol=4e-3), (k, cov)


@pytest.mark.parametrize("variance", ["fixedsmall", "fixedlarge"])
def test_ddpm_with_exact_eps_reproduces_mixture(variance):
    schedule = DiscreteSchedule(linear_betas(1000))
    gen = torch.Generator().manual_seed(1)
    x_T = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    nfes = []
    x = ddpm(exact_eps_fn(schedule, MIXTURE), schedule, x_T, variance=variance, clip_x0=False,
             generator=gen, callback=lambda d: nfes.append(d["nfe"]))
    assert nfes[-1] == 1000
    assert_matches_mixture(x, MIXTURE)


def test_respaced_ddpm_uses_original_timesteps_and_reproduces_mixture():
    full = DiscreteSchedule(linear_betas(1000))
    respaced = full.respace(spaced_timesteps(1000, 250, "even"))
    seen = set()
    base = exact_eps_fn(full, MIXTURE)

    def eps_fn(x, t):
        seen.update(t.tolist())
        return base(x, t)

    gen = torch.Generator().manual_seed(2)
    x = ddpm(eps_fn, respaced, torch.randn(4000, 2, generator=gen, dtype=torch.float64),
             variance="fixedsmall", clip_x0=False, generator=gen)
    assert seen == set(respaced.timesteps.tolist())
    assert_matches_mixture(x, MIXTURE)


def test_per_sample_generators_make_samples_independent_of_batching():
    from diffzoo.utils.random import per_sample_generators

    schedule = DiscreteSchedule(linear_betas(20))
    eps_fn = exact_eps_fn(schedule, MIXTURE)
    x_T = torch.randn(6, 2, dtype=torch.float64)
    full = ddpm(eps_fn, schedule, x_T, generator=per_sample_generators(0, range(6)), clip_x0=False)
    part = ddpm(eps_fn, schedule, x_T[3:], generator=per_sample_generators(0, range(3, 6)), clip_x0=False)
    assert torch.equal(full[3:], part)


def test_unknown_variance_lists_choices():
    schedule = DiscreteSchedule(linear_betas(10))
    with pytest.raises(ValueError, match="fixedlarge, fixedsmall, learned_range"):
        ddpm(lambda x, t: x, schedule, torch.zeros(1, 2), variance="large")
