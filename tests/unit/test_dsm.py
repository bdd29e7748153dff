"""Denoising score matching (NCSN eqs. 5–6; Score SDE eq. 7) against closed forms.

With Gaussian data ``N(μ, s0² I)`` every noisy marginal is Gaussian, so the loss at the exact score
has a closed form: ``E‖target‖² − E‖∇log p‖²``. With a Gaussian mixture, the exact noisy score is
the minimiser: the loss's derivative in any direction vanishes there (and not at a wrong score).
"""

import math

import numpy as np
import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.objectives.dsm import NCSNDSMLoss, SDEDSMLoss
from diffzoo.schedules import VESDE, VPSDE, SubVPSDE
from diffzoo.schedules.ladder import SigmaLadder

D, MU, S0 = 2, (0.5, -1.0), 0.7
N = 40_000


def gaussian():
    return GaussianMixture([1.0], [MU], covs=S0)


def mixture(weights=(0.8, 0.2)):
    return GaussianMixture(list(weights), [[1.0, 1.0], [-1.0, -1.0]], covs=0.4)


def within(mean_est, per_sample, expected, k=4.0):
    se = float(per_sample.std()) / math.sqrt(per_sample.numel())
    return abs(float(mean_est) - expected) < k * se, se


def exact_ladder_score(gm):
    return lambda x, sigma: gm.score(x, alpha=1.0, sigma=sigma).to(x.dtype)


def exact_sde_score(gm, sde):
    return lambda x, t: gm.score(x, alpha=sde.alpha(t), sigma=sde.sigma(t)).to(x.dtype)


# ---------------------------------------------------------------------------------- NCSN
def test_ncsn_dsm_at_the_exact_score_is_its_closed_form_minimum():
    """½σ² E‖s* + z/σ‖² = ½D(1 − σ²/(s0² + σ²)) per level; averaged over i ~ U{1..L}."""
    ladder = SigmaLadder(sigma_max=3.0, sigma_min=0.1, L=5)
    gm = gaussian()
    torch.manual_seed(0)
    out = NCSNDSMLoss(anneal_power=2.0)(exact_ladder_score(gm), ladder, gm.sample(N).double())
    s2 = ladder.sigmas**2
    expected = float((0.5 * D * S0**2 / (S0**2 + s2)).mean())
    ok, se = within(out.loss, out.per_sample, expected)
    assert ok, (float(out.loss), expected, se)


def test_ncsn_dsm_draws_every_level_uniformly_and_weights_by_sigma_power():
    ladder = SigmaLadder(sigma_max=3.0, sigma_min=0.1, L=5)
    x = gaussian().sample(5000).double()
    torch.manual_seed(1)
    out2 = NCSNDSMLoss(2.0)(lambda x, s: torch.zeros_like(x), ladder, x)
    torch.manual_seed(1)
    out0 = NCSNDSMLoss(0.0)(lambda x, s: torch.zeros_like(x), ladder, x)
    torch.testing.assert_close(out2.per_sample, out0.per_sample * out2.t**2)  # λ(σ) = σ² (eq. 6)
    idx = ladder.index(out2.t)
    torch.testing.assert_close(out2.t, ladder.sigmas[idx])  # every σ is a level of the ladder
    counts = torch.bincount(idx, minlength=ladder.L).double()
    sd = math.sqrt(5000 * 0.2 * 0.8)
    assert bool(((counts - 1000).abs() < 5 * sd).all()), counts


def _directional_derivative(loss, score_fn, schedule, x, direction, seed, delta=1e-3):
    """Per-sample central difference of the loss along score_fn + δ·direction (exact: the loss is
    quadratic in the score), with the same noise on both sides."""
    per = []
    for d in (delta, -delta):
        torch.manual_seed(seed)
        per.append(loss(lambda y, t, d=d: score_fn(y, t) + d * direction(y), schedule, x).per_sample)
    return (per[0] - per[1]) / (2 * delta)


def _direction(y):
    return torch.tanh(y) + torch.tensor([0.3, -0.2], dtype=y.dtype)


def _halved(score_fn):
    """A wrong score: half the exact one (too weak a pull towards the data)."""
    return lambda y, t: 0.5 * score_fn(y, t)


def _identity(y):
    return y


def test_ncsn_dsm_gradient_vanishes_at_the_exact_mixture_score_only():
    ladder = SigmaLadder(sigma_max=3.0, sigma_min=0.1, L=6)
    x = mixture().sample(N, generator=torch.Generator().manual_seed(2)).double()
    loss = NCSNDSMLoss(2.0)
    d_exact = _directional_derivative(loss, exact_ladder_score(mixture()), ladder, x, _direction, seed=3)
    ok, se = within(d_exact.mean(), d_exact, 0.0)
    assert ok, (float(d_exact.mean()), se)
    d_radial = _directional_derivative(loss, exact_ladder_score(mixture()), ladder, x, _identity, seed=3)
    assert within(d_radial.mean(), d_radial, 0.0)[0]
    # the test has power: a wrong score is not a stationary point
    d_wrong = _directional_derivative(loss, _halved(exact_ladder_score(mixture())), ladder, x, _identity, seed=3)
    assert abs(float(d_wrong.mean())) > 8 * float(d_wrong.std()) / math.sqrt(N)


# ---------------------------------------------------------------------------------- Score SDE
def _expected_sigma2_loss(sde, eps, reduce):
    """E_{t~U(eps,1)} of ‖σ s* + z‖² reduced: per dimension α²s0²/(α²s0² + σ²) (Gaussian data)."""
    nodes, weights = np.polynomial.legendre.leggauss(400)
    t = torch.as_tensor(eps + (1 - eps) * (nodes + 1) / 2, dtype=torch.float64)
    a2, s2 = sde.alpha(t) ** 2, sde.sigma(t) ** 2
    per_dim = a2 * S0**2 / (a2 * S0**2 + s2)
    mean_t = float((torch.as_tensor(weights) * per_dim).sum() / 2)  # ∫ dt/(1 − eps) over [eps, 1]
    return mean_t if reduce == "mean" else 0.5 * D * mean_t


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(sigma_min=0.01, sigma_max=5.0)], ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_sde_dsm_at_the_exact_score_is_its_closed_form_minimum(sde, reduce):
    gm, eps = gaussian(), 1e-5
    torch.manual_seed(4)
    out = SDEDSMLoss("sigma2", reduce, eps)(exact_sde_score(gm, sde), sde, gm.sample(N).double())
    assert float(out.t.min()) >= eps and float(out.t.max()) <= 1.0
    expected = _expected_sigma2_loss(sde, eps, reduce)
    ok, se = within(out.loss, out.per_sample, expected)
    assert ok, (float(out.loss), expected, se)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=lambda s: type(s).__name__)
def test_sde_weightings_and_reductions_are_the_papers(sde):
    """Same draws: likelihood weighting = σ²-weighting × g(t)²/σ(t)² (eq. 7 with λ = g²), and
    "sum" = ½·D × "mean" (losses.py's reduce_op)."""
    x = mixture().sample(512, generator=torch.Generator().manual_seed(5)).double()

    def wrong_score(y, t):
        return -y  # any function: the identities hold for every score

    outs = {}
    for weighting in ("sigma2", "likelihood"):
        for reduce in ("mean", "sum"):
            torch.manual_seed(6)
            outs[weighting, reduce] = SDEDSMLoss(weighting, reduce)(wrong_score, sde, x)
    t = outs["sigma2", "mean"].t
    g2 = sde.sde(torch.zeros(len(t), 1, dtype=torch.float64), t).diffusion ** 2
    ratio = g2 / sde.sigma(t) ** 2
    torch.testing.assert_close(outs["likelihood", "mean"].per_sample, outs["sigma2", "mean"].per_sample * ratio)
    for weighting in ("sigma2", "likelihood"):
        torch.testing.assert_close(outs[weighting, "sum"].per_sample, 0.5 * D * outs[weighting, "mean"].per_sample)


@pytest.mark.parametrize("weighting", ["sigma2", "likelihood"])
def test_sde_dsm_gradient_vanishes_at_the_exact_mixture_score_only(weighting):
    sde = VPSDE()
    x = mixture().sample(N, generator=torch.Generator().manual_seed(7)).double()
    loss = SDEDSMLoss(weighting, "mean", eps=1e-3)
    d_exact = _directional_derivative(loss, exact_sde_score(mixture(), sde), sde, x, _direction, seed=8)
    ok, se = within(d_exact.mean(), d_exact, 0.0)
    assert ok, (float(d_exact.mean()), se)
    d_radial = _directional_derivative(loss, exact_sde_score(mixture(), sde), sde, x, _identity, seed=8)
    assert within(d_radial.mean(), d_radial, 0.0)[0]
    d_wrong = _directional_derivative(loss, _halved(exact_sde_score(mixture(), sde)), sde, x, _identity, seed=8)
    assert abs(float(d_wrong.mean())) > 8 * float(d_wrong.std()) / math.sqrt(N)


def test_sde_dsm_validates_its_options():
    with pytest.raises(ValueError, match="sigma2"):
        SDEDSMLoss(weighting="uniform")
    with pytest.raises(ValueError, match="mean"):
        SDEDSMLoss(reduce="max")
    with pytest.raises(ValueError, match="eps"):
        SDEDSMLoss(eps=0.0)
