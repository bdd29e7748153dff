"""Rectified flow / flow matching against the closed forms of Gaussian data.

For ``x₀ ~ N(μ, s² I)``, ``ε ~ N(0, I)`` independent and ``x_t = (1 − t) x₀ + t ε`` (diffzoo's time:
t = 1 is noise), ``(x₀, ε, x_t)`` is jointly Gaussian per coordinate with ``Var x_t = D(t) = (1 − t)² s²
+ t²``, ``Cov(x₀, x_t) = (1 − t) s²``, ``Cov(ε, x_t) = t``. Hence, with ``r = x − (1 − t) μ``:

    E[x₀ | x_t = x] = μ + (1 − t) s² r / D,    E[ε | x_t = x] = t r / D,
    u*(x, t) = E[ε − x₀ | x_t = x] = −μ + (t − (1 − t) s²) r / D         (linear in x)

At t = 1, ``u* = x − μ``: one Euler step from t = 1 to 0 gives ``x − u* = μ`` for every x — 1-RF
collapses to the mean. The exact ODE maps ``x₁ ↦ μ + s x₁`` (the linear flow with the right
marginals: ``x_t = (1 − t) μ + √D(t) x₁``); reflow on the coupling ``(x₁, μ + s x₁)`` gives
``x_t = (1 − t) μ + ((1 − t) s + t) x₁`` and the deterministic velocity
``u₂(x, t) = (1 − s)(x − (1 − t) μ)/((1 − t) s + t) − μ``, constant along paths.
"""

import math

import pytest
import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.denoisers import Denoiser, mixture_denoiser
from diffzoo.errors import ConfigError
from diffzoo.metrics.straightness import straightness
from diffzoo.objectives import FlowMatchingLoss
from diffzoo.samplers import SamplerSpec, ddim, flow_euler, flow_heun, flow_rk45
from diffzoo.samplers.flow import velocity
from diffzoo.schedules import VPSDE, RectifiedFlow, alpha_sigma_derivatives, flow_from

MU = torch.tensor([0.7, -1.2], dtype=torch.float64)
S = 0.5
RF = RectifiedFlow(time_scale=1.0)


def _t(t, x):
    return torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1).expand(x.shape[0], 1)


def exact_u(x, t):
    """u*(x, t) of 1-RF on N(μ, s²I) (module docstring)."""
    t = _t(t, x)
    D = (1 - t) ** 2 * S**2 + t**2
    return -MU + (t - (1 - t) * S**2) * (x - (1 - t) * MU) / D


def exact_x0(x, t):
    t = _t(t, x)
    D = (1 - t) ** 2 * S**2 + t**2
    return MU + (1 - t) * S**2 * (x - (1 - t) * MU) / D


def straight_u(x, t):
    """u₂(x, t) of 2-RF: the reflowed coupling (x₁, μ + s x₁) (module docstring)."""
    t = _t(t, x)
    return (1 - S) * (x - (1 - t) * MU) / ((1 - t) * S + t) - MU


def flow_model(u_fn, process=RF):
    return Denoiser(lambda x, tau: u_fn(x, tau), process, "flow", model_time=lambda t: t)


def gaussian():
    return GaussianMixture([1.0], MU[None], S)


def x1(n=64, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------- the process and the conversions
def test_process_coefficients_and_posterior():
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    assert torch.equal(RF.alpha(t), 1 - t) and torch.equal(RF.sigma(t), t)
    assert alpha_sigma_derivatives(RF, 0.4) == (-1.0, 1.0)
    # interior: the same posterior as the mixin's λ form (VDM eq. 6)
    from diffzoo.schedules.process import GaussianProcess

    a, b = RF.posterior(0.7, 0.3), GaussianProcess.posterior(RF, 0.7, 0.3)
    assert all(math.isclose(p, q, rel_tol=1e-12, abs_tol=1e-15) for p, q in zip(a, b))
    # the ends: α = 0 at t = 1 (x_t carries nothing of x₀), σ = 0 at s = 0 (x_s = x₀)
    top = RF.posterior(1.0, 0.5)
    assert top.coef_xt == 0.0 and math.isclose(top.coef_x0, 0.5) and math.isclose(top.var_small, 0.25)
    bottom = RF.posterior(0.5, 0.0)
    assert bottom.coef_x0 == 1.0 and bottom.var_small == 0.0


def test_autograd_derivatives_match_closed_forms():
    vp = VPSDE()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    da, ds = alpha_sigma_derivatives(vp, t)
    alpha, sigma = vp.alpha(t), vp.sigma(t)
    da_exact = -0.5 * vp.beta(t) * alpha  # d/dt exp(−½∫β) (Score SDE eq. 11)
    assert torch.allclose(da, da_exact, rtol=1e-12)
    assert torch.allclose(ds, -alpha * da_exact / sigma, rtol=1e-12)  # σ = √(1 − α²)
    # the rectified-flow process by autograd too (a view without its own d_alpha_sigma)
    view = type("View", (), {"alpha": RF.alpha, "sigma": RF.sigma, "t_min": 0.0, "t_max": 1.0})()
    assert alpha_sigma_derivatives(view, 0.3) == (-1.0, 1.0)


@pytest.mark.parametrize("t", [0.0, 0.25, 0.6, 0.999])
def test_exact_velocity_through_every_view(t):
    """The mixture's exact denoiser (a score model) gives u* through α' x̂₀ + σ' ε̂; a flow model of u*
    gives the exact posterior mean through x̂₀ = x − t u, ε̂ = x + (1 − t) u."""
    x = x1(16) * 1.5
    u, x0 = velocity(mixture_denoiser(gaussian(), RF, conditional=False), x, t)
    assert torch.allclose(u, exact_u(x, t), atol=1e-9)
    assert torch.allclose(x0, exact_x0(x, t), atol=1e-9)
    p = flow_model(exact_u).predict(x, t)
    assert torch.allclose(p.x0, exact_x0(x, t), atol=1e-9)
    assert torch.allclose(p.x0, x - t * exact_u(x, t), atol=1e-12)
    assert torch.allclose(p.eps, x + (1 - t) * exact_u(x, t), atol=1e-12)


@pytest.mark.parametrize("process", [RF, VPSDE()], ids=["rectified_flow", "vp"])
def test_flow_prediction_round_trips_with_x0_eps_v(process):
    g = torch.Generator().manual_seed(3)
    x, out = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 8, dtype=torch.float64)
    p = Denoiser(lambda x, tau: out, process, "flow", model_time=lambda t: t).predict(x, t)
    a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
    assert torch.allclose(a * p.x0 + s * p.eps, x, atol=1e-12)  # consistent with the marginal
    assert torch.allclose(flow_from(process, p.x0, p.eps, t), out, atol=1e-12)  # flow → (x₀, ε) → flow
    for prediction, native in (("x0", p.x0), ("eps", p.eps), ("v", p.v)):
        q = Denoiser(lambda x, tau, n=native: n, process, prediction, model_time=lambda t: t).predict(x, t)
        assert torch.allclose(q.x0, p.x0, atol=1e-10) and torch.allclose(q.eps, p.eps, atol=1e-10), prediction


# ---------------------------------------------------------------------- samplers
def test_one_euler_step_of_1rf_collapses_to_the_mean():
    x = x1(32)
    out = flow_euler(flow_model(exact_u), x, 1)
    assert torch.allclose(out, MU.expand_as(out), atol=1e-12)


def test_one_euler_step_of_2rf_is_exact_and_straightness():
    x = x1(4000)
    exact = MU + S * x
    assert torch.allclose(flow_euler(flow_model(straight_u), x, 1), exact, atol=1e-12)
    assert straightness(flow_model(straight_u), x, steps=50) < 1e-20
    # 1-RF: S = E‖x₁‖² ∫₀¹ (1 − s − a'(t))² dt with a = √D (module docstring: x_t = (1 − t) μ + a(t) x₁)
    t = torch.linspace(0, 1, 200001, dtype=torch.float64)
    a_dot = (-(1 - t) * S**2 + t) / torch.sqrt((1 - t) ** 2 * S**2 + t**2)
    expected = float(x.pow(2).sum(1).mean() * torch.trapezoid((1 - S - a_dot) ** 2, t))
    measured = straightness(flow_model(exact_u), x, steps=400)
    assert expected > 0.05
    assert measured == pytest.approx(expected, rel=0.03)  # the Euler path and left rule: O(1/steps)


def _errors(sampler, budgets, model, x, exact):
    return [float((sampler(model, x, k) - exact).abs().max()) for k in budgets]


def test_euler_and_heun_converge_at_orders_one_and_two():
    x = x1(64)
    exact = MU + S * x  # the exact ODE map of 1-RF
    model = flow_model(exact_u)
    e = _errors(flow_euler, [16, 32, 64, 128], model, x, exact)
    h = _errors(flow_heun, [32, 64, 128, 256], model, x, exact)  # NFE: 16 … 128 Heun steps
    euler_rates = [a / b for a, b in zip(e, e[1:])]
    heun_rates = [a / b for a, b in zip(h, h[1:])]
    # halving the step divides the global error by 2^order (asymptotically; Heun approaches 4 from below)
    assert all(1.8 < r < 2.2 for r in euler_rates), euler_rates
    assert all(3.4 < r < 4.4 for r in heun_rates), heun_rates
    assert h[-1] < e[-1] / 10


def test_flow_samplers_run_a_score_model_on_its_own_process():
    """The exact VP score model under flow_heun / flow_rk45: the probability-flow ODE in VP time maps
    x₁ to α_ε μ + √(α_ε² s² + σ_ε²)/√(α_1² s² + σ_1²) · (x₁ − α_1 μ) for Gaussian data."""
    vp = VPSDE()
    x = x1(32)
    a1, s1 = vp.alpha_sigma(1.0)
    ae, se = vp.alpha_sigma(vp.sampling_eps)
    exact = ae * MU + math.sqrt(ae**2 * S**2 + se**2) / math.sqrt(a1**2 * S**2 + s1**2) * (x - a1 * MU)
    model = mixture_denoiser(gaussian(), vp, conditional=False)
    assert float((flow_heun(model, x, 400) - exact).abs().max()) < 2e-3
    assert float((flow_rk45(model, x, rtol=1e-7, atol=1e-7) - exact).abs().max()) < 1e-4


def test_a_flow_model_runs_under_ddim_ddpm_and_rk45():
    """DDIM (η = 0) reads the flow through x̂₀ / ε̂ and is a first-order solver of the same ODE: its error
    against the exact map halves as the steps double. Ancestral sampling draws N(μ, s²I)."""
    x = x1(32)
    exact = MU + S * x
    e = [float((ddim(flow_model(exact_u), x, k) - exact).abs().max()) for k in (50, 100, 200)]
    assert all(1.8 < a / b < 2.2 for a, b in zip(e, e[1:])), e
    n = 4000
    y = SamplerSpec("ddpm", 200, clip_x0=False, spacing="uniform")(flow_model(exact_u), x1(n, seed=5),
                                                                   generator=torch.Generator().manual_seed(0))
    # 4 Monte-Carlo standard errors (s/√n for the mean, s/√(2n) for the std) plus 1 % for 200 steps
    assert float((y.mean(0) - MU).abs().max()) < 4 * S / math.sqrt(n) + 0.01
    assert float((y.std(0) - S).abs().max()) < 4 * S / math.sqrt(2 * n) + 0.01 * S
    nfe = {}
    out = flow_rk45(flow_model(exact_u), x, rtol=1e-8, atol=1e-8, callback=lambda i: nfe.update(n=i["nfe"]))
    assert float((out - exact).abs().max()) < 1e-5 and nfe["n"] > 10


def test_plans_count_the_nfe():
    assert SamplerSpec("flow_euler", 7).plan(RF).nfe == 7
    assert SamplerSpec("flow_euler", 7).plan(RF).grid[-1] == 1.0
    assert SamplerSpec("flow_heun", 7).plan(RF).nfe == 6
    assert SamplerSpec("flow_rk45").adaptive and SamplerSpec("flow_rk45").plan(RF).nfe is None
    with pytest.raises(ValueError, match="sampler.steps"):
        SamplerSpec("flow_rk45", 5).plan(RF)
    with pytest.raises(ValueError, match="at least 2"):
        SamplerSpec("flow_heun", 1).plan(RF)
    with pytest.raises(ConfigError, match="spacing"):
        SamplerSpec("flow_euler", 4, skip="quad")
    seen = []
    flow_heun(flow_model(exact_u), x1(2), 6, callback=lambda i: seen.append(i["nfe"]))
    assert seen == [2, 4, 6]


# ---------------------------------------------------------------------- the objective
def test_loss_is_zero_on_the_straight_coupling_and_minimal_at_the_exact_velocity():
    torch.manual_seed(0)
    loss = FlowMatchingLoss()
    noise = x1(512, seed=1).float()
    x0 = (MU + S * noise.double()).float()
    out = loss(lambda x, tau: straight_u(x.double(), tau.double()).float(), RF, x0, noise=noise)
    assert float(out.loss) < 1e-10  # the reflowed pairs: the target is a function of x_t
    # independent coupling: E‖u* − (ε − x₀)‖²/d = E_t[(1 + s²) − (t − (1 − t)s²)²/D(t)]: the
    # conditional variance of ε − x₀ given x_t (Var = 1 + s², Cov(ε − x₀, x_t) = t − (1 − t)s²)
    data = (MU + S * x1(20000, seed=2)).float()
    exact = float(loss(lambda x, tau: exact_u(x.double(), tau.double()).float(), RF, data).loss)
    t = torch.linspace(0, 1, 100001, dtype=torch.float64)
    D = (1 - t) ** 2 * S**2 + t**2
    expected = float(torch.trapezoid((1 + S**2) - (t - (1 - t) * S**2) ** 2 / D, t))
    assert exact == pytest.approx(expected, rel=0.03)  # 20k draws of a χ²-like loss: std error < 1 %
    off = float(loss(lambda x, tau: exact_u(x.double(), tau.double()).float() + 0.3, RF, data).loss)
    assert off == pytest.approx(exact + 0.09, rel=0.03)  # bias² added, cross term vanishes in expectation


def test_logit_normal_times():
    torch.manual_seed(0)
    t = FlowMatchingLoss("logit_normal", logit_mean=0.5, logit_std=0.8).sample_t(RF, 40000, "cpu")
    logit = torch.log(t / (1 - t))
    assert abs(float(logit.mean()) - 0.5) < 4 * 0.8 / 200 and abs(float(logit.std()) - 0.8) < 0.02
    with pytest.raises(ConfigError, match="objective.time_sampling"):
        FlowMatchingLoss("beta")


def test_ddpm_models_run_in_the_time_of_their_vp_sde_and_others_are_refused():
    """A DDPM table has no derivative at its integer steps (autograd of the table: 0): the guard refuses it,
    and the flow samplers walk the VP SDE the linear table discretises — where flow_rk45 solves the same
    ODE as the probability-flow sampler (f − ½g²∇log p = α' x̂₀ + σ' ε̂ for the VP SDE, Score SDE eq. 13)."""
    from diffzoo.samplers import probability_flow_ode
    from diffzoo.schedules import DiscreteSchedule, cosine_betas, linear_betas

    table = DiscreteSchedule(linear_betas(1000))
    with pytest.raises(ValueError, match="not differentiable at t=10.0"):
        alpha_sigma_derivatives(table, 10.0)
    assert alpha_sigma_derivatives(table, 10.5)[0] < 0  # between steps: the interpolation's slope
    model = mixture_denoiser(gaussian(), table, conditional=False)
    x = x1(16)
    ours = flow_rk45(model, x, rtol=1e-8, atol=1e-8)
    theirs = probability_flow_ode(model, x, rtol=1e-8, atol=1e-8, eps=VPSDE().sampling_eps)
    assert float((ours - theirs).abs().max()) < 1e-4
    assert SamplerSpec("flow_euler", 10).plan(table).grid[-1] == 1.0  # SDE time
    with pytest.raises(ValueError, match="alpha'"):
        SamplerSpec("flow_euler", 10).plan(DiscreteSchedule(cosine_betas(1000)))


class _ExactFlowModule(torch.nn.Module):
    """The least a module needs for the evaluation's sampling loop: the exact 1-RF velocity of N(μ, s²I)."""

    data_shape, sampler = (2,), SamplerSpec("flow_euler", 10)

    @property
    def device(self):
        return torch.device("cpu")

    def denoiser(self, use_ema=True):
        return flow_model(exact_u)

    def weights_label(self, use_ema=True):
        return "ema" if use_ema else "raw"


def test_straightness_metric_is_the_closed_form_and_independent_of_the_batch_size():
    from diffzoo.metrics.straightness import straightness_records

    torch.set_default_dtype(torch.float64)
    try:
        rec = straightness_records(_ExactFlowModule(), n=600, seed=3, batch_size=64, steps=200)[0]
        again = straightness_records(_ExactFlowModule(), n=600, seed=3, batch_size=7, steps=200)[0]
    finally:
        torch.set_default_dtype(torch.float32)
    assert rec.name == "straightness600" and rec.metric == "straightness" and rec.nfe == 200
    assert again.value == pytest.approx(rec.value, rel=1e-12)  # path i depends on (seed, i) only
    # closed form (test above): S = E‖x₁‖² ∫₀¹ (1 − s − a'(t))² dt with E‖x₁‖² = 2 for 2-D standard noise
    t = torch.linspace(0, 1, 200001, dtype=torch.float64)
    a_dot = (-(1 - t) * S**2 + t) / torch.sqrt((1 - t) ** 2 * S**2 + t**2)
    expected = 2.0 * float(torch.trapezoid((1 - S - a_dot) ** 2, t))
    # 5 standard errors of the 600-path mean, plus the Euler path's O(1/steps) bias (3 % at 400 steps above)
    assert abs(rec.value - expected) < 5 * rec.std + 0.03 * expected, (rec.value, rec.std, expected)
