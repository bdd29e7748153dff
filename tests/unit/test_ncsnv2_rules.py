"""NCSNv2's techniques 1, 2 and 4 (Song & Ermon 2020, §3) against closed forms, exact Langevin
chains, and the values in the NCSNv2 configs."""

import itertools
import math

import pytest
import torch
from scipy.stats import norm

from diffzoo.samplers.langevin import annealed_langevin
from diffzoo.schedules.sigmas import (
    geometric_sigmas,
    ncsnv2_gamma_rule_value,
    ncsnv2_num_levels,
    ncsnv2_optimal_eps,
    ncsnv2_sigma_max,
    ncsnv2_solve_gamma,
    ncsnv2_step_ratio,
)

CIFAR_D = 32 * 32 * 3
SIGMA_L = 0.01
# NCSNv2 configs (sigma_begin, num_classes, n_steps_each, step_lr); sigma_end = 0.01 everywhere
CONFIGS = {
    "cifar10": (50.0, 232, 5, 6.2e-6),
    "celeba": (90.0, 500, 5, 3.3e-6),
    "church": (140.0, 788, 4, 4.9e-6),
    "bedroom": (190.0, 1086, 3, 1.8e-6),
    "ffhq": (348.0, 2311, 3, 9e-7),
}


def config_gamma(name):
    sigma_1, L, _, _ = CONFIGS[name]
    return (sigma_1 / SIGMA_L) ** (1.0 / (L - 1))


# ------------------------------------------------------------------ geometric grid and T1
def test_geometric_sigmas_ratio_and_ends():
    s = geometric_sigmas(50.0, 0.01, 232)
    assert s.dtype == torch.float64 and s.shape == (232,)
    assert s[0].item() == pytest.approx(50.0) and s[-1].item() == pytest.approx(0.01)
    torch.testing.assert_close(s[:-1] / s[1:], torch.full((231,), 5000.0 ** (1 / 231), dtype=torch.float64))


def test_sigma_max_is_the_max_pairwise_distance():
    x = torch.randn(37, 2, 3)
    brute = max((x[i] - x[j]).norm().item() for i, j in itertools.combinations(range(37), 2))
    assert ncsnv2_sigma_max(x, chunk_size=5) == pytest.approx(brute, rel=1e-6)


# ------------------------------------------------------------------ T2
def test_gamma_rule_matches_scipy_and_cifar_values():
    for gamma, D in [(1.01, 100), (1.04, CIFAR_D), (1.2, 7)]:
        c = math.sqrt(2 * D) * (gamma - 1)
        assert ncsnv2_gamma_rule_value(gamma, D) == pytest.approx(norm.cdf(c + 3 * gamma) - norm.cdf(c - 3 * gamma), abs=1e-12)
    gamma = config_gamma("cifar10")
    assert gamma == pytest.approx(5000.0 ** (1 / 231), rel=1e-12)  # = 1.03756
    assert ncsnv2_gamma_rule_value(gamma, CIFAR_D) == pytest.approx(0.567, abs=1e-3)
    root = ncsnv2_solve_gamma(CIFAR_D)
    assert ncsnv2_gamma_rule_value(root, CIFAR_D) == pytest.approx(0.5, abs=1e-12)
    assert root == pytest.approx(1.0398, abs=1e-4)
    assert root > gamma  # the config is more conservative than the rule: L = 232 > rule's L
    assert ncsnv2_num_levels(50.0, SIGMA_L, root) < 232 <= ncsnv2_num_levels(50.0, SIGMA_L, gamma)


def test_gamma_rule_is_the_gaussian_shell_probability():
    """T2's value is P(x lands in the 3-sd shell of N(0, σ_{i−1}² I)) for x ~ N(0, σ_i² I), using
    ‖x‖/σ ≈ N(√D, ½): P(|‖x‖ − γ√D| < 3γ/√2) = Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ).
    Check against Monte Carlo (σ_i = 1)."""
    D, gamma, n = 400, 1.12, 40000
    r = torch.randn(n, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64).norm(dim=1)
    mc = ((r - gamma * math.sqrt(D)).abs() < 3 * gamma / math.sqrt(2)).double().mean().item()
    assert 0.1 < mc < 0.9  # a non-trivial probability, so the comparison can fail
    assert ncsnv2_gamma_rule_value(gamma, D) == pytest.approx(mc, abs=0.02)


# ------------------------------------------------------------------ T4
def test_step_ratio_equals_the_exact_variance_recursion():
    """Var_{t+1}/σ² = (1 − u)² Var_t/σ² + 2u with u = ε/σ_L², starting from γ²."""
    gamma, T = 1.04, 5
    for eps in (1e-6, 6e-6, 3e-5):
        u, r = eps / SIGMA_L**2, gamma**2
        for _ in range(T):
            r = (1 - u) ** 2 * r + 2 * u
        assert ncsnv2_step_ratio(eps, gamma, SIGMA_L, T) == pytest.approx(r, rel=1e-10)


def test_step_ratio_matches_annealed_langevin_on_a_point_mass():
    """Run the sampler itself (code convention) on data = δ_0, score −x/σ²: after level σ_2 the
    sample variance / σ_2² is the Proposition 3 ratio."""
    D, T, gamma, sigma_2 = 200_000, 4, 1.3, 0.5
    eps = 0.3 * sigma_2**2  # u = ε/σ_L² = 0.3 with σ_L = σ_2
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, D, dtype=torch.float64, generator=g) * gamma * sigma_2  # a draw at level σ_1 = γσ_2
    score = lambda x, s: -x / s[:, None] ** 2  # noqa: E731
    x = annealed_langevin(score, [sigma_2], x0, n_steps_each=T, step_lr=eps, denoise=False,
                          step_convention="code", generator=g)
    ratio = x.var().item() / sigma_2**2
    expected = ncsnv2_step_ratio(eps, gamma, sigma_2, T)
    assert abs(expected - gamma**2) > 0.1  # the steps changed the variance measurably
    assert ratio == pytest.approx(expected, rel=5 * math.sqrt(2 / D))


@pytest.mark.parametrize("name", ["cifar10", "celeba", "bedroom", "ffhq"])
def test_optimal_eps_reproduces_the_configs(name):
    _, _, T, eps_config = CONFIGS[name]
    gamma = config_gamma(name)
    best = ncsnv2_optimal_eps(gamma, SIGMA_L, T)
    assert best.eps == pytest.approx(eps_config, rel=0.03)
    # it is the minimiser of |ratio − 1|, and the minimum is above 1 (no exact root)
    assert best.ratio > 1
    for f in (0.97, 0.99, 1.01, 1.03):
        assert best.ratio - 1 <= abs(ncsnv2_step_ratio(best.eps * f, gamma, SIGMA_L, T) - 1) + 1e-15


def test_optimal_eps_cifar_digits():
    best = ncsnv2_optimal_eps(config_gamma("cifar10"), SIGMA_L, 5)
    assert best.eps == pytest.approx(6.18e-6, rel=2e-3)
    assert best.ratio - 1 == pytest.approx(0.0555, abs=5e-4)


def test_church_config_does_not_follow_the_rule():
    """The church config's ε = 4.9e-6 is about twice what Technique 4 gives (≈ 2.31e-6)."""
    _, _, T, eps_config = CONFIGS["church"]
    best = ncsnv2_optimal_eps(config_gamma("church"), SIGMA_L, T)
    assert best.eps == pytest.approx(2.31e-6, rel=5e-3)
    assert eps_config / best.eps > 2.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="sigma_max > sigma_min"):
        geometric_sigmas(0.01, 50.0, 10)
    with pytest.raises(ValueError, match="target"):
        ncsnv2_solve_gamma(10, target=1.0)
