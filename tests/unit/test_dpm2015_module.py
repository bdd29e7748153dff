"""DPM2015Module and its network (Sohl-Dickstein et al. 2015): the module's bound against the
closed forms of schedules/dpm2015.py, the learned-variance parameterisation, ancestral sampling."""

import math

import pytest
import torch
from torch import nn

from diffzoo.errors import ConfigError
from diffzoo.lit.dpm2015 import DPM2015Module, null_loglik_bits
from diffzoo.networks.dpm2015_mlp import DPM2015MLP, ReverseCoefficients, temporal_bump_basis
from diffzoo.schedules import DiscreteSchedule
from diffzoo.schedules.dpm2015 import DPM2015Schedule
from tests.unit.test_dpm2015 import expected_kl_isotropic_data

T = 10


def make_module(T=T, net=None, learn_betas=False, **kw) -> DPM2015Module:
    schedule = DPM2015Schedule(T, learn_betas=learn_betas)
    net = net or DPM2015MLP(dim=2, T=T, hidden=16, depth=2)
    return DPM2015Module(net, schedule, optimizer=torch.optim.Adam, **kw)


def mean_and_se(x: torch.Tensor) -> tuple[float, float]:
    return x.mean().item(), x.std().item() / math.sqrt(x.numel())


# ------------------------------------------------------------------ the bound
@pytest.mark.parametrize("t_sampling", ["batch", "sample", "all"])
def test_bound_is_zero_bits_in_the_isotropic_debug_setting(t_sampling):
    """With the readout at zero (μ_coeff = β_coeff = 0), p is the forward kernel run backwards —
    the exact reverse for x_0 ~ N(0, I) — and every estimator of K − L_null averages to 0 bits
    (schedules/dpm2015: test_bound_is_zero_in_the_isotropic_debug_setting)."""
    module = make_module(T=40, net=DPM2015MLP(dim=2, T=40, zero_init_readout=True))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(20000, 2, dtype=torch.float64, generator=g)
    if t_sampling == "batch":  # one t per minibatch: average over many minibatches
        bits = torch.cat([module.bound(xb, t_sampling, g).k_minus_lnull for xb in x0.split(100)])
    else:
        bits = module.bound(x0, t_sampling, g).k_minus_lnull
    m, se = mean_and_se(bits)
    assert abs(m) < 5 * se
    if t_sampling == "all":
        assert se < 0.02  # tight enough to see a 0.1-bit error


def test_module_kl_terms_match_the_closed_form_per_step():
    """E KL_t of the module's kernels at the debug setting equals the second-moment closed form
    of tests/unit/test_dpm2015.py, for every t = 2..T."""
    module = make_module(net=DPM2015MLP(dim=2, T=T))
    g = torch.Generator().manual_seed(1)
    exact = expected_kl_isotropic_data(DiscreteSchedule(module.schedule.betas()))  # DDPM tables cross-check q_posterior
    B = 40000
    for t in range(1, T):
        x0 = torch.randn(B, 2, dtype=torch.float64, generator=g)
        kl = module.kl_terms(x0, torch.full((B,), t), torch.randn(B, 2, dtype=torch.float64, generator=g))
        m, se = mean_and_se(kl)
        assert abs(m - exact[t].item()) < 5 * se + 1e-9


def test_isotropic_bound_is_zero_for_any_whitened_data():
    """The isotropic kernels' expected KL depends on the data only through E x_0 and E x_0²: for
    non-Gaussian whitened data (uniform, variance 1) the bound relative to N(0, I) is still 0 bits."""
    module = make_module(net=DPM2015MLP(dim=2, T=T))
    g = torch.Generator().manual_seed(2)
    x0 = math.sqrt(3) * (2 * torch.rand(20000, 2, dtype=torch.float64, generator=g) - 1)
    m, se = mean_and_se(module.bound(x0, "all", g).k_minus_lnull)
    assert abs(m) < 5 * se


def test_bound_bits_are_k_minus_lnull_plus_the_unit_gaussian_loglik():
    assert null_loglik_bits(2) == pytest.approx(-(1 + math.log(2 * math.pi)) / math.log(2))  # −4.094 bits
    module = make_module()
    est = module.bound(torch.randn(8, 2), "sample", torch.Generator().manual_seed(0))
    torch.testing.assert_close(est.k, est.k_minus_lnull + null_loglik_bits(2))


# ------------------------------------------------------------------ the learned variance
class ConstantVariance(nn.Module):
    """μ_coeff = 0 and one learnable β_coeff per step: the reverse variance alone is fitted."""

    def __init__(self, T: int):
        super().__init__()
        self.T = T
        self.beta_coeff = nn.Parameter(torch.zeros(T, dtype=torch.float64))

    def forward(self, x, t):
        c = self.beta_coeff[t][:, None].expand_as(x)
        return ReverseCoefficients(torch.zeros_like(x), c)


def test_learned_variance_reaches_the_kl_optimal_variance():
    """For x_0 ~ N(0, s²) and μ_p = √(1−β_t) x_t, E KL is minimised by
    σ_p² = β̃_t + E[(μ̃_t − μ_p)²] (closed form from second moments). Fitting β_coeff on the
    module's bound drives sigmoid(β_coeff/√T + logit β_t) to that value at every step."""
    s2 = 4.0  # data wider than the unit Gaussian: the optimal variance is ~25% above β_t
    net = ConstantVariance(T)
    module = make_module(net=net)
    sch = DiscreteSchedule(module.schedule.betas().detach())
    b, abar = sch.betas, sch.alphas_cumprod
    a, c = sch.posterior_mean_coef1, sch.posterior_mean_coef2 - torch.sqrt(1 - b)
    cross = abar.sqrt() * s2  # E[x_0 x_t]
    second = a**2 * s2 + 2 * a * c * cross + c**2 * (abar * s2 + 1 - abar)
    optimal = sch.posterior_variance + second

    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(3)
    for _ in range(400):
        x0 = math.sqrt(s2) * torch.randn(2048, 2, dtype=torch.float64, generator=g)
        loss = -module.bound(x0, "all", g).k_minus_lnull.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fitted = torch.sigmoid(net.beta_coeff.detach() / math.sqrt(T) + torch.logit(b))
    torch.testing.assert_close(fitted[1:], optimal[1:], rtol=0.03, atol=0)
    assert ((optimal[1:] - b[1:]) / b[1:]).min() > 0.2  # the optimum is far from β_t: the fit had to move


def test_reverse_variance_is_the_sd15_sigmoid_perturbation():
    module = make_module(net=ConstantVariance(T))
    module.net.beta_coeff.data = torch.linspace(-20, 20, T, dtype=torch.float64)
    x = torch.randn(T, 2, dtype=torch.float64)
    t = torch.arange(T)
    p = module.reverse_moments(x, t)
    b = module.schedule.betas()
    expected = torch.sigmoid(module.net.beta_coeff.detach() / math.sqrt(T) + torch.logit(b))
    torch.testing.assert_close(p.variance, expected[:, None].expand_as(x))
    assert bool(((p.variance > 0) & (p.variance < 1)).all())
    torch.testing.assert_close(p.mean, torch.sqrt(1 - b)[:, None] * x)


# ------------------------------------------------------------------ sampling
def test_sampling_shapes_callback_and_seeding():
    module = make_module()
    seen = []
    x = module.sample(7, generator=torch.Generator().manual_seed(0), callback=lambda d: seen.append(d["nfe"]))
    assert x.shape == (7, 2)
    assert seen == list(range(1, T)) + [T - 1]  # T − 1 network calls, then the fixed last step
    again = module.sample(7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, again)
    x_T = torch.randn(3, 2)
    assert module.sample(x_T=x_T).shape == (3, 2)
    with pytest.warns(UserWarning, match="steps"):
        module.sample(2, steps=5)


def test_ancestral_chain_in_the_debug_setting_keeps_a_unit_gaussian():
    """Each reversed isotropic kernel maps Var 1 to (1 − β)·1 + β = 1, so samples are N(0, I)."""
    module = make_module(T=40, net=DPM2015MLP(dim=2, T=40))
    x = module.sample(40000, generator=torch.Generator().manual_seed(4)).double()
    n = x.shape[0]
    assert x.mean(0).abs().max().item() < 5 / math.sqrt(n)
    assert (x.var(0) - 1).abs().max().item() < 5 * math.sqrt(2 / n)


# ------------------------------------------------------------------ network and checks
def test_bump_basis_is_normalised_and_peaks_at_its_centres():
    basis = temporal_bump_basis(40, 10)
    assert basis.shape == (10, 40)
    torch.testing.assert_close(basis.sum(0), torch.ones(40, dtype=torch.float64))
    assert basis[0].argmax().item() == 0 and basis[-1].argmax().item() == 39


def test_network_depends_on_t_only_through_the_readout():
    """SD15 temporal_readout: f(x, t) = Σ_k g_k(t) F_k(x), with F_k(x) the readout layer's K
    outputs per (dimension, quantity) and g_k the bump basis at step t."""
    net = DPM2015MLP(dim=2, T=T, hidden=8, depth=2, num_basis=4, zero_init_readout=False)
    x = torch.randn(5, 2)
    h = x
    for layer in net.layers:
        h = torch.nn.functional.leaky_relu(layer(h), 0.05)
    z = net.readout(h).view(5, 2, 2, 4)
    for t in (1, 6, T - 1):
        out = net(x, torch.full((5,), t))
        expected = (z * net.basis[:, t]).sum(-1)
        torch.testing.assert_close(out.mu_coeff, expected[..., 0])
        torch.testing.assert_close(out.beta_coeff, expected[..., 1])


def test_invalid_configurations_are_rejected():
    with pytest.raises(ConfigError, match="t_sampling"):
        make_module(t_sampling="every")
    with pytest.raises(ConfigError, match="net.T"):
        make_module(net=DPM2015MLP(dim=2, T=T + 1))
    with pytest.raises(ValueError, match="shape"):
        DPM2015MLP(dim=2, T=T)(torch.randn(3, 3), torch.zeros(3, dtype=torch.long))


# ------------------------------------------------------------------ the bound against the exact ELBO
class LinearKernels(nn.Module):
    """p(x_{t−1} | x_t) = N(c_t x_t, v_t) for given tables (paper's t = index + 1), written in the
    SD15 parameterisation: μ_coeff = (c_t − √(1−β_t)) x_t / √β_t, β_coeff = √T (logit v_t − logit β_t)."""

    def __init__(self, betas: torch.Tensor, c: torch.Tensor, v: torch.Tensor):
        super().__init__()
        self.T = betas.numel()
        self.dtype_anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.betas, self.c, self.v = betas, c, v

    def forward(self, x, t):
        b, c, v = (table[t][:, None] for table in (self.betas, self.c, self.v))
        mu_coeff = (c - torch.sqrt(1 - b)) * x / torch.sqrt(b)
        return ReverseCoefficients(mu_coeff, math.sqrt(self.T) * (torch.logit(v) - torch.logit(b)).expand_as(x))


def exact_elbo_nats(betas, c, v, s2: float) -> float:
    """E_q log[p(x_{0:T}) / q(x_{1:T}|x_0)] per dimension for x_0 ~ N(0, s²), in closed form from
    second moments m_t = ᾱ_t s² + 1 − ᾱ_t and Cov(x_{t−1}, x_t) = √(1−β_t) m_{t−1}; the step
    t = 1 uses the fixed kernel N(√(1−β_1) x_1, β_1) (SD15 App. B.2)."""
    abar = torch.cumprod(1 - betas, 0)
    m = torch.cat([torch.tensor([s2], dtype=torch.float64), abar * s2 + 1 - abar])  # m_0 … m_T
    c, v = c.clone(), v.clone()
    c[0], v[0] = torch.sqrt(1 - betas[0]), betas[0]
    sq = m[:-1] - 2 * c * torch.sqrt(1 - betas) * m[:-1] + c**2 * m[1:]  # E(x_{t−1} − c_t x_t)²
    log_p_reverse = (-0.5 * torch.log(2 * math.pi * v) - sq / (2 * v)).sum()
    log_q_forward = (-0.5 * torch.log(2 * math.pi * betas) - 0.5).sum()
    log_p_prior = -0.5 * math.log(2 * math.pi) - m[-1] / 2
    return (log_p_prior + log_p_reverse - log_q_forward).item()


@pytest.mark.parametrize("s2", [1.0, 2.0])
def test_bound_equals_the_exact_elbo_for_gaussian_data(s2):
    """SD15 eq. 14 rewrites the ELBO with E_q log p(x_T) ≈ −H_p(x_T) and E_q log p(x_0|x_1) ≈
    −H_q(x_1|x_0); both hold exactly when E x_0² = 1 per dimension, and otherwise miss
    (s² − 1)(ᾱ_T + β_1)/2 nats per dimension. The module's K (all t, Monte Carlo over x_0 and
    the noise) matches the closed-form ELBO of arbitrary linear-Gaussian kernels with that offset."""
    T, D, B = 8, 2, 20000
    schedule = DPM2015Schedule(T)
    b = schedule.betas().detach()
    abar = torch.cumprod(1 - b, 0)
    m = torch.cat([torch.tensor([s2], dtype=torch.float64), abar * s2 + 1 - abar])
    g = torch.Generator().manual_seed(4)
    u = torch.rand(2, T, dtype=torch.float64, generator=g) - 0.5
    c = torch.sqrt(1 - b) * m[:-1] / m[1:] * (1 + 0.2 * u[0])  # the true reverse, perturbed
    v = b * m[:-1] / m[1:] * torch.exp(0.6 * u[1])
    module = DPM2015Module(LinearKernels(b, c, v), schedule, optimizer=torch.optim.Adam)
    x0 = math.sqrt(s2) * torch.randn(B, D, dtype=torch.float64, generator=g)
    k_nats = module.bound(x0, "all", g).k * math.log(2)
    m_k, se = mean_and_se(k_nats)
    expected = D * (exact_elbo_nats(b, c, v, s2) + (s2 - 1) * (abar[-1].item() + b[0].item()) / 2)
    assert abs(m_k - expected) < 5 * se + 1e-9
    assert se < 0.02  # sharp enough to see the offset at s² = 2 (≈ 0.14 nats)


def test_learned_betas_are_optimised_with_the_bound():
    """With schedule.learn_betas the β coefficients are in the optimizer, receive the bound's
    gradient, and have their own EMA; the isotropic bound stays 0 bits for any β (the debug
    kernel is the exact reverse of every Gaussian forward kernel on N(0, I) data)."""
    module = make_module(learn_betas=True)
    optimizer = module.configure_optimizers()
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(module.schedule.beta_perturb) in trained and module.schedule_ema is not None
    with torch.no_grad():
        module.schedule.beta_perturb.copy_(torch.linspace(-1.5, 1.5, 10, dtype=torch.float64))
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(20000, 2, dtype=torch.float64, generator=g)
    est = module.bound(x0, "all", g).k_minus_lnull
    m, se = mean_and_se(est)
    assert abs(m) < 5 * se
    (-est.mean()).backward()
    assert module.schedule.beta_perturb.grad is not None and bool(module.schedule.beta_perturb.grad.abs().sum() > 0)
    assert make_module().schedule_ema is None


def test_a_learning_rate_schedule_decays_the_network_and_the_betas_alike():
    """The β coefficients are a second group of the one optimizer, built before the scheduler, so the
    schedule drives both groups (dpm2015_swissroll's cosine decay)."""
    from functools import partial

    module = make_module(learn_betas=True, lr_scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=10))
    out = module.configure_optimizers()
    optimizer, scheduler = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert scheduler.base_lrs == [1e-3, 1e-3]
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    net_group, beta_group = optimizer.param_groups
    assert net_group["lr"] == beta_group["lr"] == pytest.approx(0.5e-3)  # cos(π/2): half way
    assert any(p is module.schedule.beta_perturb for p in beta_group["params"])
