"""ScoreModule, the score parameterisations, the σ ladder, the ODE NLL and the score experiments' recipes."""

import functools
import math

import pytest
import torch
from torch import nn

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.lit.score import ScoreModule
from diffzoo.metrics.ode_nll import ode_nll
from diffzoo.networks import NCSNMLP
from diffzoo.objectives.dsm import NCSNDSMLoss, SDEDSMLoss
from diffzoo.parameterization.score import ScoreParameterization
from diffzoo.samplers import annealed_langevin, pc, probability_flow_ode
from diffzoo.schedules import VESDE, VPSDE, SubVPSDE, geometric_sigmas
from diffzoo.schedules.ladder import SigmaLadder
from diffzoo.schedules.sigmas import ncsnv2_num_levels, ncsnv2_optimal_eps, ncsnv2_sigma_max, ncsnv2_solve_gamma
from tests.helpers import compose_train

TIME_SCALE = 999.0


def gm(shift=0.0, scale=1.0):
    """A 2-D mixture, optionally in coordinates u = (x + shift) · scale."""
    means = (torch.tensor([[0.6, 0.4], [-0.5, -0.3]], dtype=torch.float64) + shift) * scale
    return GaussianMixture([0.7, 0.3], means, covs=0.25 * scale)


class ExactEps(nn.Module):
    """The exact ε* = −σ∇log p_t of a mixture under an SDE, as a "network" fed 999 t."""

    def __init__(self, mixture, sde):
        super().__init__()
        self.mixture, self.sde = mixture, sde

    def forward(self, x, label):
        t = label.double() / TIME_SCALE
        return self.mixture.eps(x, self.sde.alpha(t), self.sde.sigma(t)).to(x.dtype)


class SigmaTimesScore(nn.Module):
    """σ(t)·∇log p_t of a mixture under an SDE (what a "scaled" net learns), fed 999 t."""

    def __init__(self, mixture, sde):
        super().__init__()
        self.mixture, self.sde = mixture, sde

    def forward(self, x, label):
        t = label.double() / TIME_SCALE
        sigma = self.sde.sigma(t)
        return (sigma[:, None] * self.mixture.score(x, self.sde.alpha(t), sigma)).to(x.dtype)


def make_module(net, schedule, sampler=None, parameterization=None, objective=None, **kw):
    parameterization = parameterization or ScoreParameterization("eps", "time", TIME_SCALE)
    return ScoreModule(
        net=net, schedule=schedule, objective=objective or SDEDSMLoss(),
        sampler=sampler or functools.partial(pc, predictor="euler_maruyama", corrector="none"),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3), parameterization=parameterization,
        data_shape=(2,), **kw,
    )


# ---------------------------------------------------------------------------------- parameterisations
@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE()], ids=lambda s: type(s).__name__)
def test_eps_parameterization_turns_the_exact_eps_into_the_exact_score(sde):
    mixture = gm()
    param = ScoreParameterization("eps", "time", TIME_SCALE)
    x = torch.randn(64, 2, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64) * 0.99 + 0.01
    expected = mixture.score(x, sde.alpha(t), sde.sigma(t))
    torch.testing.assert_close(param(ExactEps(mixture, sde), sde, x, t), expected)


def test_scaled_parameterization_divides_by_sigma():
    sde, mixture = VESDE(sigma_min=0.01, sigma_max=5.0), gm()
    x = torch.randn(32, 2, dtype=torch.float64)
    t = torch.rand(32, dtype=torch.float64)
    out = ScoreParameterization("scaled", "time", TIME_SCALE)(SigmaTimesScore(mixture, sde), sde, x, t)
    torch.testing.assert_close(out, mixture.score(x, sde.alpha(t), sde.sigma(t)))
    # NCSNv2 Technique 3: an unconditional net on a ladder, output / σ
    ladder = SigmaLadder(sigma_max=4.0, sigma_min=0.5, L=4)
    sig = ladder.sigmas[torch.tensor([0, 3, 1])]
    const = nn.Linear(2, 2).double()
    out = ScoreParameterization("scaled", "none")(const, ladder, x[:3], sig)
    torch.testing.assert_close(out, const(x[:3]) / sig[:, None])


def test_direct_parameterization_feeds_the_level_index():
    ladder = SigmaLadder(sigma_max=20.0, sigma_min=1.0, L=10)
    seen = {}

    class Spy(nn.Module):
        def forward(self, x, y=None, sigma=None):
            seen["y"] = y
            return x * 2

    idx = torch.tensor([9, 0, 4, 4])
    x = torch.randn(4, 2)
    out = ScoreParameterization("direct")(Spy(), ladder, x, ladder.sigmas[idx].float())
    assert torch.equal(seen["y"], idx)
    torch.testing.assert_close(out, x * 2)


def test_parameterization_validates_kinds_and_combinations():
    with pytest.raises(ValueError, match="eps"):
        ScoreParameterization("x0")
    with pytest.raises(ValueError, match="time"):
        ScoreParameterization("eps", "sigma")
    with pytest.raises(ValueError, match="ladder"):
        ScoreParameterization("direct").check(nn.Identity(), VPSDE())
    with pytest.raises(ValueError, match="scale_by_sigma"):
        ScoreParameterization("scaled", "none").check(NCSNMLP(num_classes=None, scale_by_sigma=True), SigmaLadder())
    with pytest.raises(ValueError, match="conditional"):
        ScoreParameterization("direct").check(nn.Identity(), SigmaLadder(), conditional=True)


# ---------------------------------------------------------------------------------- σ ladder
def test_ladder_levels_index_and_prior():
    ladder = SigmaLadder(sigma_max=50.0, sigma_min=0.01, L=232)
    torch.testing.assert_close(ladder.sigmas, geometric_sigmas(50.0, 0.01, 232))
    assert torch.equal(ladder.index(ladder.sigmas.float()), torch.arange(232))
    torch.testing.assert_close(ladder.sigma(ladder.sigmas), ladder.sigmas)
    g = torch.Generator().manual_seed(0)
    u = SigmaLadder(prior="uniform", prior_range=(-8.0, 8.0)).prior_sampling((20000, 2), generator=g)
    assert float(u.min()) >= -8 and float(u.max()) < 8
    assert abs(float(u.mean())) < 4 * 16 / math.sqrt(12 * 40000)
    assert abs(float(u.var()) - 256 / 12) < 0.5  # U[−8, 8]: variance 16²/12
    z = SigmaLadder(sigma_max=3.0, prior="gaussian").prior_sampling((20000, 2), generator=g)
    assert abs(float(z.std()) - 3.0) < 0.05
    with pytest.raises(ValueError, match="uniform"):
        SigmaLadder(prior="laplace")
    with pytest.raises(ValueError, match="decreasing"):
        SigmaLadder(sigmas=[1.0, 2.0])


def test_ladder_plan_spends_a_langevin_budget():
    ladder = SigmaLadder(sigma_max=1.0, sigma_min=0.01, L=10)
    full = ladder.plan(None, 100)
    assert torch.equal(full.sigmas, ladder.sigmas) and full.n_steps_each == 100
    assert ladder.plan(5000, 100).n_steps_each == 100  # more than configured: as configured
    fewer = ladder.plan(350, 100)
    assert torch.equal(fewer.sigmas, ladder.sigmas) and fewer.n_steps_each == 35
    thin = ladder.plan(4, 100)
    assert thin.n_steps_each == 1 and thin.sigmas.numel() == 4
    assert float(thin.sigmas[0]) == float(ladder.sigmas[0]) and float(thin.sigmas[-1]) == float(ladder.sigmas[-1])
    assert bool((thin.sigmas[1:] < thin.sigmas[:-1]).all())


@pytest.mark.parametrize("sde", [VPSDE(beta_min=0.2, beta_max=10.0), SubVPSDE(), VESDE(sigma_min=0.02, sigma_max=30.0)],
                         ids=lambda s: type(s).__name__)
def test_with_steps_rebuilds_the_same_sde_with_another_N(sde):
    new = sde.with_steps(17)
    assert type(new) is type(sde) and new.N == 17
    t = torch.linspace(0.01, 1.0, 9, dtype=torch.float64)
    torch.testing.assert_close(new.sigma(t), sde.sigma(t))
    torch.testing.assert_close(new.alpha(t), sde.alpha(t))
    ref = type(sde)(**{k: getattr(sde, k) for k in ("beta_min", "beta_max", "sigma_min", "sigma_max") if hasattr(sde, k)}, N=17)
    x = torch.randn(9, 2)
    torch.testing.assert_close(new.discretize(x, t.float()).G, ref.discretize(x, t.float()).G)


# ---------------------------------------------------------------------------------- the module
def test_steps_is_the_nfe_budget_of_pc_and_of_annealed_langevin():
    """``sampler.steps`` is the NFE budget of every sampler: PC with a corrector spends two network
    evaluations per time step, so 14 means N = 7; annealed Langevin spreads its updates over the ladder."""
    nfe = {}

    def record(d):
        nfe["n"] = d["nfe"]

    mixture, sde = gm(), VPSDE()
    module = make_module(ExactEps(mixture, sde), sde)
    x = module.sample(4, steps=7, generator=torch.Generator().manual_seed(0), callback=record)
    assert x.shape == (4, 2) and nfe["n"] == 7
    steps = []
    module.sample(4, steps=14, sampler=functools.partial(pc, predictor="euler_maruyama", corrector="langevin"),
                  callback=lambda d: (record(d), steps.append(d["t"])))
    assert nfe["n"] == 14 and len(steps) == 7
    assert module.schedule.N == 1000  # the module's own process is untouched

    ladder = SigmaLadder(sigma_max=1.0, sigma_min=0.1, L=10, prior_range=(-1.0, 1.0))
    sampler = functools.partial(annealed_langevin, n_steps_each=100, step_lr=1e-3, denoise=True)
    ncsn = make_module(NCSNMLP(num_classes=10), ladder, sampler, parameterization="direct", objective=NCSNDSMLoss())
    for steps, expected in ((7, 7 + 1), (35, 30 + 1), (None, 1000 + 1)):
        ncsn.sample(3, steps=steps, callback=record)
        assert nfe["n"] == expected, steps


def test_exact_score_module_samples_the_mixture_with_pc_and_ode():
    mixture, sde = GaussianMixture([0.7, 0.3], [[2.0, 2.0], [-2.0, -2.0]], covs=0.5), VPSDE()
    module = make_module(ExactEps(mixture, sde), sde)
    g = torch.Generator().manual_seed(1)
    for sampler, steps in ((functools.partial(pc, predictor="euler_maruyama", corrector="none"), 200),
                           (functools.partial(probability_flow_ode, rtol=1e-4, atol=1e-4), None)):
        x = module.sample(4000, sampler=sampler, steps=steps, generator=g).double()
        in_first = (x.sum(-1) > 0).double().mean()  # the modes are 5.7 sd from the line
        assert abs(float(in_first) - 0.7) < 5 * math.sqrt(0.21 / 4000)
        torch.testing.assert_close(x[x.sum(-1) > 0].mean(0), torch.tensor([2.0, 2.0], dtype=torch.float64), atol=0.05, rtol=0)


class _TimeIgnoring(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t, y=None):
        return self.lin(x)


def test_unit_transform_trains_on_unit_data_and_samples_back_to_data_coordinates():
    seen = {}

    def spy_objective(score_fn, schedule, x0):
        seen["x0"] = x0
        return SDEDSMLoss()(score_fn, schedule, x0)

    module = make_module(_TimeIgnoring(), VPSDE(), objective=spy_objective, data_transform="unit")
    x = torch.rand(16, 2) * 2 - 1
    module.training_step({"x": x}, 0)
    torch.testing.assert_close(seen["x0"], (x + 1) / 2)
    torch.testing.assert_close(module.from_model(module.to_model(x)), x)
    x_T = torch.zeros(5, 2)
    denoiser = module.denoiser()
    torch.testing.assert_close(denoiser.to_data(x_T), 2 * x_T - 1)
    torch.testing.assert_close(denoiser.from_data(denoiser.to_data(x)), x)
    assert denoiser.data_range == (0.0, 1.0)
    with pytest.raises(ValueError, match="unit"):
        make_module(_TimeIgnoring(), VPSDE(), data_transform="centred")


def test_training_noise_is_a_function_of_seed_and_step():
    def loss(seed, global_seed):
        torch.manual_seed(123)  # the same initial weights
        module = make_module(_TimeIgnoring(), VPSDE(), seed=seed)
        torch.manual_seed(global_seed)  # whatever the global RNG holds before the step
        module.on_train_batch_start(None, 0)
        return float(module.training_step({"x": torch.ones(8, 2)}, 0))

    assert loss(0, global_seed=5) == loss(0, global_seed=6)
    assert loss(0, global_seed=5) != loss(1, global_seed=5)


def test_ema_none_uses_the_raw_weights_and_ema_follows_the_optimizer():
    ladder = SigmaLadder(sigma_max=1.0, sigma_min=0.1, L=3)
    sampler = functools.partial(annealed_langevin, n_steps_each=2, step_lr=1e-3)
    module = make_module(NCSNMLP(num_classes=3), ladder, sampler, parameterization="direct", objective=NCSNDSMLoss(), ema_decay=None)
    assert module.ema is None
    x, s = torch.randn(4, 2), ladder.sigmas[:1].float().expand(4)
    torch.testing.assert_close(module.score_fn(use_ema=True)(x, s), module.score_fn(use_ema=False)(x, s))
    with_ema = make_module(NCSNMLP(num_classes=3), ladder, sampler, parameterization="direct", objective=NCSNDSMLoss(), ema_decay=0.5)
    with torch.no_grad():
        for p in with_ema.net.parameters():
            p.add_(1.0)
    with_ema.ema.update(with_ema.net)
    raw, ema = with_ema.score_fn(use_ema=False)(x, s), with_ema.score_fn(use_ema=True)(x, s)
    assert not torch.allclose(raw, ema)


def test_module_rejects_mismatched_process_objective_and_sampler():
    from diffzoo.errors import ConfigError

    ladder, langevin_sampler = SigmaLadder(L=3), functools.partial(annealed_langevin, n_steps_each=2)
    direct = ScoreParameterization("direct")
    with pytest.raises(ConfigError, match="dsm_ncsn"):
        make_module(NCSNMLP(num_classes=3), ladder, langevin_sampler, parameterization=direct, objective=SDEDSMLoss())
    with pytest.raises(ConfigError, match="dsm_sde"):
        make_module(_TimeIgnoring(), VPSDE(), objective=NCSNDSMLoss())
    with pytest.raises(ConfigError, match="annealed_langevin"):
        make_module(NCSNMLP(num_classes=3), ladder, functools.partial(pc), parameterization=direct, objective=NCSNDSMLoss())
    with pytest.raises(ConfigError, match="sampler=pc"):
        make_module(_TimeIgnoring(), VPSDE(), langevin_sampler)


# ---------------------------------------------------------------------------------- ODE NLL
def test_ode_nll_is_the_exact_density_in_bits_per_dim_in_either_coordinate_system():
    """Exact scores in data coordinates (centred) and in [0, 1] coordinates (unit, density ×2^D,
    offset 8 instead of 7) both give the exact −log p(x)/(D ln 2) + 7 bits/dim when the ODE ends
    in the exact p_1; with the N(0, I) prior they are off by the prior mismatch only."""
    sde = VPSDE()
    t1 = torch.tensor(1.0, dtype=torch.float64)
    x = gm().sample(16, generator=torch.Generator().manual_seed(3)).double()
    exact_bpd = -gm().log_prob(x) / (2 * math.log(2)) + 7.0
    for mixture, transform in ((gm(), "none"), (gm(shift=1.0, scale=0.5), "unit")):
        module = make_module(ExactEps(mixture, sde), sde, data_transform=transform)
        p1 = functools.partial(mixture.log_prob, alpha=sde.alpha(t1), sigma=sde.sigma(t1))
        out = ode_nll(module.denoiser(), x, dequantize=False, hutchinson="exact", rtol=1e-7, atol=1e-7, prior_logp=p1)
        torch.testing.assert_close(out.bits_per_dim.double(), exact_bpd, atol=2e-4, rtol=0)
        assert out.nfe > 0
        # the N(0, I) prior: log N(z; α(1)μ, ·) vs log N(z; 0, I) differs by O(α(1)·|μ|·|z|) nats
        approx = ode_nll(module.denoiser(), x, dequantize=False, hutchinson="exact", rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(approx.bits_per_dim.double(), exact_bpd, atol=0.02, rtol=0)
    ncsn = make_module(NCSNMLP(num_classes=3), SigmaLadder(L=3), functools.partial(annealed_langevin, n_steps_each=2),
                       parameterization=ScoreParameterization("direct"), objective=NCSNDSMLoss())
    with pytest.raises(ValueError, match="no continuous-time SDE"):
        ode_nll(ncsn.denoiser(), x)


# ---------------------------------------------------------------------------------- recipes
def test_ncsnv2_digits_settings_follow_the_papers_rules():
    """NCSNv2 Techniques 1, 2 and 4 recomputed from the digits training split in [0, 1]."""
    from hydra.utils import instantiate

    cfg = compose_train(["experiment=ncsnv2_digits"])
    dm = instantiate(cfg.data)
    x = (dm.train_dataset_tensor() + 1) / 2
    sigma_1 = ncsnv2_sigma_max(x)
    assert cfg.schedule.sigma_max == pytest.approx(sigma_1, abs=5e-4)
    D = x[0].numel()
    assert cfg.schedule.L == ncsnv2_num_levels(sigma_1, cfg.schedule.sigma_min, ncsnv2_solve_gamma(D))
    gamma = (cfg.schedule.sigma_max / cfg.schedule.sigma_min) ** (1 / (cfg.schedule.L - 1))
    best = ncsnv2_optimal_eps(gamma, cfg.schedule.sigma_min, cfg.sampler.n_steps_each)
    assert cfg.sampler.step_lr == pytest.approx(best.eps, rel=2e-3)
    assert cfg.parameterization.kind == "scaled" and cfg.net.num_classes is None and cfg.ema.decay == 0.999


def test_ncsn_and_ncsnv2_cifar10_are_the_paper_recipes():
    ncsn = compose_train(["experiment=ncsn_cifar10"])
    assert (ncsn.schedule.sigma_max, ncsn.schedule.sigma_min, ncsn.schedule.L) == (1.0, 0.01, 10)
    assert (ncsn.sampler.n_steps_each, ncsn.sampler.step_lr, ncsn.sampler.step_convention) == (100, 2e-5, "code")
    assert ncsn.objective.anneal_power == 2.0 and ncsn.parameterization.kind == "direct"
    assert ncsn.optimizer.lr == 1e-3 and ncsn.data.batch_size == 128 and ncsn.trainer.max_steps == 200_000
    assert ncsn.model.data_transform == "unit" and ncsn.net.ngf == 128 and ncsn.ema.decay is None
    v2 = compose_train(["experiment=ncsnv2_cifar10"])
    assert (v2.schedule.sigma_max, v2.schedule.sigma_min, v2.schedule.L) == (50.0, 0.01, 232)
    assert (v2.sampler.n_steps_each, v2.sampler.step_lr, v2.sampler.denoise) == (5, 6.2e-6, True)
    assert v2.ema.decay == 0.999 and v2.optimizer.lr == 1e-4 and v2.trainer.max_steps == 300_000
    assert v2.parameterization.kind == "scaled" and v2.parameterization.net_input == "none"


@pytest.mark.parametrize("name, sde, reduce, ema, kind, transform", [
    ("sde_vp_cifar10", "VPSDE", "mean", 0.9999, "eps", "none"),
    ("sde_subvp_cifar10", "SubVPSDE", "mean", 0.9999, "eps", "none"),
    ("sde_ve_cifar10", "VESDE", "sum", 0.999, "scaled", "unit"),
])
def test_score_sde_cifar10_recipes(name, sde, reduce, ema, kind, transform):
    cfg = compose_train([f"experiment={name}"])
    assert cfg.schedule._target_.endswith(sde) and cfg.schedule.N == 1000
    assert (cfg.objective.weighting, cfg.objective.reduce, cfg.objective.eps) == ("sigma2", reduce, 1e-5)
    assert cfg.ema.decay == ema and cfg.parameterization.kind == kind and cfg.model.data_transform == transform
    assert cfg.optimizer.lr == 2e-4 and cfg.lr_scheduler.warmup_steps == 5000
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.data.batch_size == 128 and cfg.trainer.max_steps == 1_300_000
    assert cfg.sampler.eps == 1e-3 and cfg.sampler.denoise is True
    if name == "sde_ve_cifar10":
        assert (cfg.schedule.sigma_min, cfg.schedule.sigma_max) == (0.01, 50.0)
        assert (cfg.sampler.predictor, cfg.sampler.corrector, cfg.sampler.snr) == ("reverse_diffusion", "langevin", 0.16)
    else:
        assert (cfg.schedule.beta_min, cfg.schedule.beta_max) == (0.1, 20.0)
        assert (cfg.sampler.predictor, cfg.sampler.corrector) == ("euler_maruyama", "none")
