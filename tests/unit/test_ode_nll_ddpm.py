"""The probability-flow ODE likelihood of a discrete DDPM ε-model: the VP SDE its linear β table
discretises (Score SDE App. B), the score −ε_θ(x, (T−1)t)/σ(t) (App. C), exactness against a
Gaussian mixture's log-density, and the refusal of other β tables."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.denoisers import Denoiser, as_sde_denoiser
from diffzoo.errors import ConfigError
from diffzoo.lit.diffusion import DiffusionModule
from diffzoo.likelihood import bits_per_dim, ode_log_likelihood
from diffzoo.metrics.likelihood_eval import _check_route
from diffzoo.metrics.ode_nll import ode_nll
from diffzoo.objectives import SimpleLoss
from diffzoo.schedules import DiscreteSchedule, cosine_betas, linear_betas, scaled_linear_betas, sqrt_linear_betas


def vpsde_of_schedule(schedule, name=None):
    return schedule.as_vpsde(name)


def ddpm_as_vpsde(eps_fn, schedule):
    """The ε-model ``eps_fn(x, τ)`` (τ: the real-valued step index) read on the VP SDE of its β table."""
    return as_sde_denoiser(Denoiser(lambda x, tau: eps_fn(x, tau), schedule, "eps"))

MIX_2D = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [[[0.09, 0.05], [0.05, 0.36]], [[0.25, -0.04], [-0.04, 0.16]]])
EPS = 1e-5


def mixture_eps_fn(gm, sde, T, seen=None):
    """The mixture's exact ε* at the network time input τ = (T − 1)·t (Score SDE's 999·t for T = 1000)."""

    def eps_fn(x, tau):
        if seen is not None:
            seen.append(tau.detach().clone())
        t = tau.to(torch.float64) / (T - 1)
        return gm.eps(x, sde.alpha(t), sde.sigma(t)).to(x.dtype)

    return eps_fn


def exact_log_p(sde, gm, x, t):
    tt = torch.tensor([t], dtype=torch.float64)
    return gm.log_prob(x, sde.alpha(tt).item(), sde.sigma(tt).item())


@pytest.mark.parametrize("T, make", [(1000, linear_betas), (100, linear_betas), (250, scaled_linear_betas)])
def test_vp_sde_of_a_linear_table_discretises_back_to_it(T, make):
    """Score SDE App. B: β_i = (β_min + i/(N−1)(β_max − β_min))/N with N = T, β_min = T·β_1, β_max = T·β_T;
    DDPM's table gives β_min = 0.1, β_max = 20. The continuous marginal at t_i = i/(T−1) is the
    discrete one up to the one-step offset: |Δσ| ≤ √β_1 (attained at i = 0, where σ(0) = 0) and
    |Δα| ≤ β_T / 2 (within half a step of −log ᾱ)."""
    schedule = DiscreteSchedule(make(T))
    sde = vpsde_of_schedule(schedule)
    assert sde.N == T and sde.beta_min == pytest.approx(T * float(schedule.betas[0]), rel=1e-12)
    assert sde.beta_max == pytest.approx(T * float(schedule.betas[-1]), rel=1e-12)
    if T == 1000 and make is linear_betas:
        assert (sde.beta_min, sde.beta_max) == pytest.approx((0.1, 20.0), rel=1e-12)
    torch.testing.assert_close(sde.discrete_betas, schedule.betas, rtol=1e-12, atol=0)
    t = torch.arange(T, dtype=torch.float64) / (T - 1)
    assert (sde.sigma(t) - schedule.sqrt_one_minus_alphas_cumprod).abs().max() <= schedule.betas[0].sqrt() + 1e-12
    assert (sde.alpha(t) - schedule.sqrt_alphas_cumprod).abs().max() < schedule.betas[-1] / 2


def test_bridge_score_is_the_vp_marginal_score_and_feeds_time_times_T_minus_1():
    """s(x, t) = −ε(x, (T−1)t)/σ(t) with σ the VP marginal std: for the exact ε* it is the exact
    score of p_t = p_0 ∗ N(α(t)·, σ(t)²) (the VPSDE's marginal_prob convention), the network sees
    τ = 999·t for T = 1000, and extra output channels (learned variance) are dropped."""
    schedule = DiscreteSchedule(linear_betas(1000))
    sde = vpsde_of_schedule(schedule)
    seen = []
    eps_fn = mixture_eps_fn(MIX_2D, sde, 1000, seen)
    two_c = lambda x, tau: torch.cat([eps_fn(x, tau), torch.full_like(x, 7.0)], 1)  # noqa: E731
    bridge = ddpm_as_vpsde(two_c, schedule)
    assert bridge.model_time(1.0) == 999.0 and bridge.process.beta_max == 20.0
    x = torch.tensor([[-1.0, 0.4], [0.3, 0.0], [1.6, -0.3], [2.0, 1.0]], dtype=torch.float64)
    for t_val in (1e-3, 0.1, 0.5, 1.0):
        t = torch.full((4,), t_val, dtype=torch.float64)
        mean, std = sde.marginal_prob(x, t)
        torch.testing.assert_close(mean, sde.alpha(t)[:, None] * x)
        expected = MIX_2D.score(x, sde.alpha(t), std)
        torch.testing.assert_close(bridge.score(x, t), expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(seen[-1], 999.0 * t)


@pytest.mark.parametrize("T", [1000, 100])
def test_ode_likelihood_of_the_ddpm_model_is_the_mixture_log_density(T):
    """With the exact ε* wrapped as a DDPM model, the ODE log-likelihood equals log p_eps(x) of the
    mixture: to solver accuracy with the exact p_1 as prior, and — for T = 1000, where
    α(1) = 6.6e-3 — within the prior mismatch (PAPERS §10d; ~1e-2 nats for this 2-D mixture with
    means up to 1.5) with the N(0, I) prior."""
    schedule = DiscreteSchedule(linear_betas(T))
    sde = vpsde_of_schedule(schedule)
    bridge = ddpm_as_vpsde(mixture_eps_fn(MIX_2D, sde, T), schedule)
    x = MIX_2D.sample(40, torch.Generator().manual_seed(0)).double()
    exact = exact_log_p(sde, MIX_2D, x, EPS)
    out = ode_log_likelihood(bridge, x, hutchinson="exact", rtol=1e-6, atol=1e-6, eps=EPS,
                             prior_logp=lambda z: exact_log_p(sde, MIX_2D, z, 1.0))
    torch.testing.assert_close(out.log_likelihood, exact, atol=2e-4, rtol=0)
    if T == 1000:
        std_prior = ode_log_likelihood(bridge, x, hutchinson="exact", eps=EPS)
        assert (std_prior.log_likelihood - exact).abs().max() < 2e-2


class MixtureEpsNet(nn.Module):
    """A stand-in U-Net: ``net(x, τ) → ε*(x)`` of the mixture at SDE time τ/(T − 1)."""

    def __init__(self, gm, T):
        super().__init__()
        self.gm, self.T, self.dim = gm, T, gm.dim
        self.sde = vpsde_of_schedule(DiscreteSchedule(linear_betas(T)))
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x, tau, y=None):
        t = tau.to(torch.float64) / (self.T - 1)
        return self.gm.eps(x, self.sde.alpha(t), self.sde.sigma(t)).to(x.dtype)


def _module(betas, net, run_config=None):
    module = DiffusionModule(net, DiscreteSchedule(betas), SimpleLoss(), sampler="ddpm",
                             optimizer=lambda p: torch.optim.SGD(p, lr=0.0), data_shape=(net.dim,))
    module.run_config = run_config
    return module


def test_ode_nll_of_a_diffusion_module_is_exact():
    """``ode_nll`` on a DiffusionModule (linear β, T = 100) runs the bridge: nats equal −log p_eps of
    the mixture (exact prior), bits/dim use the [−1, 1] offset of 7 bits."""
    module = _module(linear_betas(100), MixtureEpsNet(MIX_2D, 100)).double()
    denoiser = module.denoiser()
    sde = as_sde_denoiser(denoiser).process
    assert denoiser.data_range == (-1.0, 1.0) and sde.N == 100
    x = MIX_2D.sample(12, torch.Generator().manual_seed(1)).double()
    out = ode_nll(denoiser, x, dequantize=False, hutchinson="exact", rtol=1e-6, atol=1e-6, eps=EPS,
                  prior_logp=lambda z: exact_log_p(sde, MIX_2D, z, 1.0))
    torch.testing.assert_close(out.nll, -exact_log_p(sde, MIX_2D, x, EPS), atol=2e-4, rtol=0)
    torch.testing.assert_close(out.bits_per_dim, bits_per_dim(out.nll, 2, data_range=(-1.0, 1.0)))
    assert out.nfe > 10


@pytest.mark.parametrize("make, name", [(cosine_betas, "cosine_betas"), (sqrt_linear_betas, "sqrt_linear_betas")])
def test_other_beta_tables_are_refused_naming_the_schedule(make, name):
    with pytest.raises(ValueError, match=f"β table {name} is not DDPM's linear schedule"):
        vpsde_of_schedule(DiscreteSchedule(make(100)), name)
    config = {"schedule": {"betas": {"_target_": f"diffzoo.schedules.{name}"}}}
    module = SimpleNamespace(schedule=DiscreteSchedule(make(100)), run_config=config)
    with pytest.raises(ConfigError, match=rf"metrics=\[nll_ode\]: the β table {name} .*metrics=\[nll_vlb\]"):
        _check_route(module, "nll_ode")
    _check_route(SimpleNamespace(schedule=DiscreteSchedule(linear_betas(100)), run_config=None), "nll_ode")


def test_respaced_and_decreasing_tables_are_refused():
    schedule = DiscreteSchedule(linear_betas(100))
    with pytest.raises(ValueError, match="is respaced"):
        vpsde_of_schedule(schedule.respace(list(range(0, 100, 10))))
    with pytest.raises(ValueError, match="not DDPM's linear schedule"):
        vpsde_of_schedule(DiscreteSchedule(linear_betas(100).flip(0)))
