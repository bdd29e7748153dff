"""EDM (Karras et al. 2022) against closed forms: the preconditioning of Table 1 at σ = σ_data, the
denoiser ↔ raw-network round trip, the loss weight and the unit-variance effective target (eq. 8), the
log-normal noise levels, the ρ-grid of eq. 5, the process as a VE SDE (exact probability-flow ODE for
Gaussian data), every sampler on it through the denoiser contract, and the CIFAR-10 network size."""

import math

import pytest
import torch

from diffzoo.denoisers import Denoiser
from diffzoo.objectives.edm import EDMLoss
from diffzoo.parameterization.edm import EDMPreconditioning
from diffzoo.schedules.edm import EDMProcess, karras_sigmas
from diffzoo.samplers import SamplerSpec
from tests.helpers import compose_train

SIGMAS = [0.002, 0.05, 0.5, 1.3, 80.0]


# ---------------------------------------------------------------------- preconditioning (Table 1)
@pytest.mark.parametrize("sd", [0.5, 1.3])
def test_scalings_at_sigma_data(sd):
    c = EDMPreconditioning(sd).scalings(sd)
    assert float(c.c_skip) == pytest.approx(0.5, rel=1e-15)
    assert float(c.c_out) == pytest.approx(sd / math.sqrt(2), rel=1e-15)
    assert float(c.c_in) == pytest.approx(1 / (sd * math.sqrt(2)), rel=1e-15)
    assert float(c.c_noise) == pytest.approx(0.25 * math.log(sd), rel=1e-15)


def test_loss_weight_is_one_over_c_out_squared():
    sd = 0.5
    assert float(EDMLoss.weight(sd, sd)) == pytest.approx(2 / sd**2, rel=1e-15)  # (2σ_d²)/(σ_d²)² at σ = σ_d
    s = torch.tensor(SIGMAS, dtype=torch.float64)
    c = EDMPreconditioning(sd).scalings(s)
    torch.testing.assert_close(EDMLoss.weight(s, sd) * c.c_out**2, torch.ones_like(s), rtol=1e-14, atol=0)  # eq. 8


def test_effective_target_has_unit_variance():
    """(y − c_skip x)/c_out with x = y + n, Var y = σ_d², Var n = σ²: ((1−c_skip)²σ_d² + c_skip²σ²)/c_out² = 1
    (App. B.6), in closed form and on random data."""
    sd = 0.5
    pre = EDMPreconditioning(sd)
    s = torch.tensor(SIGMAS, dtype=torch.float64)
    c = pre.scalings(s)
    torch.testing.assert_close(((1 - c.c_skip) ** 2 * sd**2 + c.c_skip**2 * s**2) / c.c_out**2, torch.ones_like(s),
                               rtol=1e-13, atol=0)
    n = 200_000
    g = torch.Generator().manual_seed(0)
    for sigma in SIGMAS:
        y = sd * torch.randn(n, generator=g, dtype=torch.float64)
        x = y + sigma * torch.randn(n, generator=g, dtype=torch.float64)
        c = pre.scalings(sigma)
        target = (y - c.c_skip * x) / c.c_out
        assert float(target.var()) == pytest.approx(1.0, abs=6 * math.sqrt(2 / n))  # sample variance: sd √(2/n)
        assert float((c.c_in * x).var()) == pytest.approx(1.0, abs=6 * math.sqrt(2 / n))  # the input too


class Linear(torch.nn.Module):
    """F(x, c_noise) = w·x + b·c_noise (a random raw network)."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, 3, generator=g))
        self.b = torch.nn.Parameter(torch.randn(3, generator=g))

    def forward(self, x, c_noise, **cond):
        return x @ self.w.to(x.dtype).T + self.b.to(x.dtype) * c_noise[:, None]


def test_denoiser_from_raw_net_round_trip():
    pre, net = EDMPreconditioning(0.5), Linear()
    x = 3 * torch.randn(16, 3, dtype=torch.float64)
    sigma = torch.exp(torch.randn(16, dtype=torch.float64))
    D = pre(net, x, sigma)
    c = pre.scalings(sigma)
    F_back = (D - c.c_skip[:, None] * x) / c.c_out[:, None]
    torch.testing.assert_close(F_back, net(c.c_in[:, None] * x, c.c_noise), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pre.bind(net)(x, sigma), D, rtol=0, atol=0)


def test_weighted_loss_is_the_effective_target_mse():
    """λ(σ)‖D − y‖² = ‖F − (y − c_skip x)/c_out‖² per sample (eq. 8), on random data and a random net."""
    pre, net, process = EDMPreconditioning(0.5), Linear(1), EDMProcess()
    y = 0.5 * torch.randn(256, 3, generator=torch.Generator().manual_seed(2))
    loss = EDMLoss()
    torch.manual_seed(3)
    out = loss(pre.bind(net), process, y)
    torch.manual_seed(3)
    sigma = loss.sample_sigma(256)
    x = y + sigma[:, None] * torch.randn_like(y)
    c = pre.scalings(sigma)
    F = net((c.c_in[:, None] * x).float(), c.c_noise.float()).double()
    effective = ((F - (y.double() - c.c_skip[:, None] * x.double()) / c.c_out[:, None]) ** 2).mean(1)
    torch.testing.assert_close(out.t, sigma)
    torch.testing.assert_close(out.per_sample.double(), effective, rtol=1e-4, atol=1e-6)


def test_log_normal_sigma():
    n = 100_000
    torch.manual_seed(4)
    log_s = torch.log(EDMLoss(-1.2, 1.2).sample_sigma(n)).double()
    assert float(log_s.mean()) == pytest.approx(-1.2, abs=6 * 1.2 / math.sqrt(n))
    assert float(log_s.std()) == pytest.approx(1.2, abs=6 * 1.2 * math.sqrt(0.5 / n))


# ---------------------------------------------------------------------- the process and its grid
def test_process_and_karras_grid():
    p = EDMProcess()
    t = torch.tensor([0.002, 1.0, 80.0], dtype=torch.float64)
    assert torch.equal(p.alpha(t), torch.ones_like(t)) and torch.equal(p.sigma(t), t)
    assert (p.t_min, p.t_max, p.sampling_eps) == (0.002, 80.0, 0.002)
    g = p.time_grid(3)
    assert g[0] == pytest.approx(0.002, rel=1e-12) and g[-1] == pytest.approx(80.0, rel=1e-12)
    assert g[1] == pytest.approx(((0.002 ** (1 / 7) + 80 ** (1 / 7)) / 2) ** 7, rel=1e-12)  # eq. 5, i = 1 of N = 3
    assert karras_sigmas(5, 1.0, 5.0, rho=1.0) == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0], rel=1e-12)
    assert p.time_grid(5, "even") == p.time_grid(5) == karras_sigmas(5, 0.002, 80.0, 7.0)
    assert p.time_grid(5, "quad") == pytest.approx([0.002 + (80 - 0.002) * (i / 4) ** 2 for i in range(5)], rel=1e-12)
    g2 = torch.Generator().manual_seed(0)
    assert float(p.prior_sample((20000, 1), g2).std()) == pytest.approx(80.0, rel=0.03)  # N(0, σ_max² I)
    assert float(p.sde(torch.zeros(1, 1), torch.tensor([2.0])).diffusion[0]) == pytest.approx(2.0)  # g = √(2t)


S = 0.7  # 1-D data N(0, S²): D(x; σ) = S² x/(S² + σ²), and the probability-flow ODE x(σ) = x_T √(S²+σ²)/√(S²+σ_max²)


def gaussian_denoiser(process):
    return Denoiser(lambda x, tau: S * S * x / (S * S + tau[:, None] ** 2), process, "x0", model_time=lambda t: t)


def test_probability_flow_ode_is_exact_for_gaussian_data():
    process = EDMProcess()
    x_T = process.prior_sample((64, 1), torch.Generator().manual_seed(5), dtype=torch.float64)
    x = SamplerSpec.of({"name": "ode", "rtol": 1e-7, "atol": 1e-7, "eps": 0.002})(gaussian_denoiser(process), x_T)
    expected = x_T * math.sqrt(S * S + 0.002**2) / math.sqrt(S * S + 80.0**2)
    torch.testing.assert_close(x, expected, rtol=1e-4, atol=1e-6)


def test_ddim_is_euler_of_first_order_on_edm():
    """DDIM (η = 0) on the EDM process is Euler on dx/dσ = (x − D)/σ (EDM Alg. 1 without the correction):
    its error against the exact flow halves as the steps double."""
    process = EDMProcess()
    x_T = process.prior_sample((8, 1), torch.Generator().manual_seed(6), dtype=torch.float64)
    exact = x_T * S / math.sqrt(S * S + 80.0**2)  # x at σ = 0
    errs = []
    for steps in (100, 200, 400):
        x = SamplerSpec.of({"name": "ddim", "steps": steps})(gaussian_denoiser(process), x_T)
        errs.append(float((x - exact).abs().max()))
    for coarse, fine in zip(errs, errs[1:]):
        assert 1.6 < coarse / fine < 2.4, errs


def test_edm_heun_is_second_order_on_the_edm_process():
    """EDM's Heun (Algorithm 1) over the ρ-grid of this process: its error against the exact flow falls
    four-fold as the budget doubles (the solver's own order tests use other processes)."""
    process = EDMProcess()
    x_T = process.prior_sample((8, 1), torch.Generator().manual_seed(6), dtype=torch.float64)
    exact = x_T * S / math.sqrt(S * S + 80.0**2)
    errs = []
    for steps in (35, 69, 139):
        x = SamplerSpec.of({"name": "edm_heun", "steps": steps, "grid": "karras"})(gaussian_denoiser(process), x_T)
        errs.append(float((x - exact).abs().max()))
    for coarse, fine in zip(errs, errs[1:]):
        assert 3.0 < coarse / fine < 5.5, errs


@pytest.mark.parametrize("sampler", [
    {"name": "edm_heun", "steps": 35, "grid": "karras"},
    {"name": "ddim", "steps": 200},
    {"name": "ddpm", "steps": 1000, "clip_x0": False, "variance": "fixedsmall"},
    {"name": "pc", "steps": 1000},  # reverse diffusion + Langevin corrector (its step needs D ≫ 1: per-sample norms)
])
def test_samplers_run_on_the_edm_process(sampler):
    """Each sampler draws N(0, S²) from the exact denoiser through the denoiser contract: the sample std
    within 4 Monte-Carlo standard errors (S/√(2n)) plus a 3 % allowance for the discretisation at these
    step counts (not a closed form: the exact-ODE and Euler-order tests above are)."""
    process = EDMProcess()
    n = 250 * 64  # 250 samples of 64 independent coordinates
    x_T = process.prior_sample((250, 64), torch.Generator().manual_seed(7), dtype=torch.float64)
    x = SamplerSpec.of(sampler)(gaussian_denoiser(process), x_T, generator=torch.Generator().manual_seed(8))
    assert torch.isfinite(x).all()
    assert float(x.std()) == pytest.approx(S, rel=0.03 + 4 / math.sqrt(2 * n))
    assert abs(float(x.mean())) < 4 * S / math.sqrt(n) + 0.01


# ---------------------------------------------------------------------- the module and the CIFAR-10 recipe
def test_edm_cifar10_network_size():
    """EDM Table 7 (config F, VP): DDPM++ with 55.73M parameters; built on the meta device."""
    from hydra.utils import instantiate

    cfg = compose_train(["experiment=edm_cifar10"])
    with torch.device("meta"):
        net = instantiate(cfg.net)
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - 55.73e6) < 0.02 * 55.73e6, n
    assert cfg.net.dropout == 0.13 and cfg.data.batch_size == 512 and cfg.optimizer.lr == 1e-3
    assert cfg.ema.decay == pytest.approx(0.5 ** (512 / 0.5e6), abs=5e-6)  # half-life 0.5 Mimg
    assert cfg.trainer.max_steps * 512 == pytest.approx(200e6, rel=1e-3)  # 200 Mimg


def test_module_sigma_data_is_one_source_and_process_is_checked():
    from diffzoo.lit.build import build_module

    cfg = compose_train(["experiment=edm_digits", "model.sigma_data=0.8"])
    module = build_module(cfg, (1, 8, 8))
    D = module.preconditioned()
    assert D.sigma_data == 0.8 and module.denoiser().prediction == "x0"
    x0 = torch.randn(8, 1, 8, 8)
    torch.manual_seed(9)
    out = module.objective(D, module.schedule, x0)
    torch.manual_seed(9)
    sigma = module.objective.sample_sigma(8)
    x = x0 + sigma[:, None, None, None] * torch.randn_like(x0)
    ref = (sigma**2 + 0.64) / (sigma * 0.8) ** 2 * ((D(x, sigma) - x0) ** 2).mean((1, 2, 3))
    torch.testing.assert_close(out.per_sample, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="schedule=edm") as err:  # Hydra wraps the ConfigError
        build_module(compose_train(["experiment=edm_digits", "schedule=linear"]), (1, 8, 8))
    assert "ConfigError" in repr(err.value)
