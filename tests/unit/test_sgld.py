"""SGLD (Welling & Teh 2011): the update, the N/n scaling, the step-size schedule, and the
mixture-posterior experiment of W&T §5.1 against its exact grid posterior."""

import math

import pytest
import torch

from diffzoo.optim import SGLD, PolynomialDecay, PolynomialDecayLR
from diffzoo.toys.sgld_mixture import (
    GridPosterior,
    MixturePosterior,
    histogram_tv_distance,
    sample_mixture_data,
)


# ------------------------------------------------------------------ the update
def test_step_is_welling_teh_eq4_with_the_same_noise():
    """θ' = θ − (ε/2)∇U + √ε z with z the generator's next draw."""
    theta0 = torch.randn(5, 3, dtype=torch.float64)
    grad = torch.randn(5, 3, dtype=torch.float64)
    eps = 0.03
    p = torch.nn.Parameter(theta0.clone())
    p.grad = grad.clone()
    SGLD([p], lr=eps, generator=torch.Generator().manual_seed(7)).step()
    z = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(p.detach(), theta0 - 0.5 * eps * grad + math.sqrt(eps) * z)


def test_three_loss_reductions_give_the_same_step():
    """loss = U (no sizes), U/N (num_data), (n/N)U (num_data, batch_size) all yield ∇U."""
    N, n, eps = 50, 5, 0.01
    x = torch.randn(N, dtype=torch.float64)
    idx = torch.arange(n)
    theta0 = torch.tensor([0.3], dtype=torch.float64)

    def nll(theta):  # −Σ_{i∈B} log N(x_i; θ, 1) + const
        return 0.5 * ((x[idx] - theta) ** 2).sum()

    def log_prior(theta):
        return -0.5 * (theta**2).sum()

    losses = {
        (None, None): lambda th: -log_prior(th) + (N / n) * nll(th),
        (N, None): lambda th: -log_prior(th) / N + nll(th) / n,
        (N, n): lambda th: -(n / N) * log_prior(th) + nll(th),
    }
    results = []
    for (num_data, batch_size), loss_fn in losses.items():
        p = torch.nn.Parameter(theta0.clone())
        opt = SGLD([p], lr=eps, num_data=num_data, batch_size=batch_size, generator=torch.Generator().manual_seed(0))
        loss_fn(p).backward()
        opt.step()
        results.append(p.detach().clone())
    for r in results[1:]:
        torch.testing.assert_close(r, results[0])


def test_stationary_variance_on_a_gaussian_matches_ula_closed_form():
    """For U = θ²/(2s²) the chain θ ← θ(1 − ε/(2s²)) + √ε z has stationary variance
    s² / (1 − ε/(4s²)) — a factor-2 error in either term of eq. 4 would move it far away."""
    s2, eps, chains = 0.5, 0.2, 20000
    p = torch.nn.Parameter(torch.zeros(chains, dtype=torch.float64))
    opt = SGLD([p], lr=eps, generator=torch.Generator().manual_seed(1))
    for _ in range(300):  # contraction (1 − 0.2)^300 ≈ 1e-29: stationary
        opt.zero_grad()
        (0.5 * (p**2).sum() / s2).backward()
        opt.step()
    expected = s2 / (1 - eps / (4 * s2))  # = 0.5 / 0.9
    var = p.detach().var().item()
    se = expected * math.sqrt(2 / (chains - 1))
    assert abs(var - expected) < 5 * se
    assert abs(var - s2) > 5 * se  # the discretisation bias is visible, so the test can fail


def test_invalid_arguments_are_rejected():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="lr"):
        SGLD([p], lr=0.0)
    with pytest.raises(ValueError, match="num_data"):
        SGLD([p], lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match=r"\(0.5, 1\]"):
        PolynomialDecay.from_endpoints(0.01, 1e-4, 100, gamma=0.4)


# ------------------------------------------------------------------ step sizes
def test_polynomial_decay_from_endpoints_solves_the_closed_form():
    eps0, eps1, n, g = 0.01, 1e-4, 10**6, 0.55
    d = PolynomialDecay.from_endpoints(eps0, eps1, n, g)
    # a b^−γ = ε_0 and a (b + n)^−γ = ε_n  ⇔  b = n / ((ε_0/ε_n)^{1/γ} − 1), a = ε_0 b^γ
    assert d.b == pytest.approx(n / ((eps0 / eps1) ** (1 / g) - 1), rel=1e-12)
    assert d.a == pytest.approx(eps0 * d.b**g, rel=1e-12)
    assert d(0) == pytest.approx(eps0, rel=1e-12)
    assert d(n) == pytest.approx(eps1, rel=1e-12)
    assert d(n // 2) < d(n // 4) < d(0)


def test_scheduler_sets_lr_to_the_decay():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = SGLD([p], lr=123.0)
    sched = PolynomialDecayLR.from_endpoints(opt, 0.01, 1e-3, 100, 0.75)
    d = sched.decay
    for t in range(5):
        assert opt.param_groups[0]["lr"] == pytest.approx(d(t), rel=1e-12)
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()


# ------------------------------------------------------------------ the mixture posterior
def test_mixture_gradient_matches_autograd_and_minibatch_is_unbiased():
    post = MixturePosterior(sample_mixture_data(100, generator=torch.Generator().manual_seed(3)))
    theta = torch.tensor([[0.2, 0.7], [1.1, -0.9]], dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(post.log_posterior(theta).sum(), theta)
    torch.testing.assert_close(post.grad_log_posterior(theta.detach()), auto)
    # the N/n-scaled minibatch estimate averages to the full gradient over all size-1 batches
    th = theta.detach()[:1].expand(100, 2)
    per_point = post.grad_log_posterior(th, torch.arange(100)[:, None])
    torch.testing.assert_close(per_point.mean(0), auto[0])


def test_grid_posterior_is_converged_and_holds_the_mass():
    post = MixturePosterior(sample_mixture_data(100, generator=torch.Generator().manual_seed(0)))
    g4 = post.grid_posterior(subdivisions=4)
    g8 = post.grid_posterior(subdivisions=8)
    # midpoint rule: error ∝ h², so the error of g8 is ≈ |g4 − g8| / 3 — far below the TV tolerance
    assert 0.5 * (g4.prob - g8.prob).abs().sum() < 3e-3
    wide = post.grid_posterior(range1=(-6.0, 7.0), range2=(-7.0, 7.0), bins=(65, 70), subdivisions=2)
    c1 = 0.5 * (wide.edges1[1:] + wide.edges1[:-1])
    c2 = 0.5 * (wide.edges2[1:] + wide.edges2[:-1])
    inside = ((c1 > -1.5) & (c1 < 2.5))[:, None] & ((c2 > -3) & (c2 < 3))[None, :]
    assert wide.prob[inside].sum() > 0.999  # the default box holds the posterior


def test_tv_distance_of_exact_cell_masses_is_zero_and_of_a_point_mass_is_large():
    grid = GridPosterior(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([[0.25], [0.75]]))
    samples = torch.tensor([[0.5, 0.5]] * 1 + [[1.5, 0.5]] * 3)
    assert histogram_tv_distance(samples, grid) == pytest.approx(0.0)
    assert histogram_tv_distance(samples[:1], grid) == pytest.approx(0.75)
    assert histogram_tv_distance(torch.tensor([[5.0, 5.0]]), grid) == pytest.approx(1.0)


def test_sgld_samples_the_mixture_posterior():
    """W&T §5.1: 500 chains, batch size 1, ε from 0.01 to 1e-4 (γ = 0.55) over 1.5·10⁴ steps,
    samples from the second half; TV to the exact 25 × 30 grid posterior < 0.1."""
    g = torch.Generator().manual_seed(0)
    post = MixturePosterior(sample_mixture_data(100, theta=(0.0, 1.0), generator=g))
    grid = post.grid_posterior()
    chains, steps, N = 500, 15000, post.num_data
    theta = torch.nn.Parameter(torch.randn(chains, 2, dtype=torch.float64, generator=g))
    opt = SGLD([theta], lr=0.01, num_data=N, batch_size=1, generator=g)
    sched = PolynomialDecayLR.from_endpoints(opt, 0.01, 1e-4, steps, gamma=0.55)
    kept = []
    for t in range(steps):
        idx = torch.randint(0, N, (chains, 1), generator=g)
        # loss = (n/N)·U for each chain; its gradient is −(1/N)·(∇log p(θ) + N ∇log p(x_i|θ))
        theta.grad = -post.grad_log_posterior(theta.detach(), idx) / N
        opt.step()
        sched.step()
        if t >= steps // 2 and t % 10 == 0:
            kept.append(theta.detach().clone())
    samples = torch.cat(kept)
    tv = histogram_tv_distance(samples, grid)
    assert tv < 0.1
    # both modes are visited in proportion to their mass
    c2 = 0.5 * (grid.edges2[1:] + grid.edges2[:-1])
    mass_upper = grid.prob[:, c2 > 0].sum().item()
    assert abs((samples[:, 1] > 0).double().mean().item() - mass_upper) < 0.05
