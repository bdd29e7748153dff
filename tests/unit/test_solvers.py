"""Few-step solvers (EDM, DPM-Solver, DPM-Solver++, UniPC) and their time grids against closed forms.

The closed form every convergence test uses: for Gaussian data ``x₀ ~ N(μ, s²)`` and any process
``x_t = α x₀ + σ ε``, write ``x̃ = x/α`` and ``σ̃ = σ/α`` (EDM §2). The exact denoiser is
``D(x̃; σ̃) = μ + s²/(s² + σ̃²)(x̃ − μ)``, so the probability-flow ODE ``dx̃/dσ̃ = (x̃ − D)/σ̃``
(EDM eq. 4 with s(t) = 1) reads ``d(x̃ − μ)/dσ̃ = σ̃/(s² + σ̃²)(x̃ − μ)``, whose solution is
``x̃(σ̃) − μ = (x̃_T − μ) √(s² + σ̃²)/√(s² + σ̃_T²)``. Every solver ends with x̂₀ at its last grid
level σ̃_L, so its exact target is ``μ + (x̃_T − μ) √(s² + σ̃_L²)/√(s² + σ̃_T²) · s²/(s² + σ̃_L²)``.
"""

import math

import pytest
import torch
from omegaconf import OmegaConf

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.denoisers import mixture_denoiser
from diffzoo.guidance import ClassifierFreeGuidance
from diffzoo.samplers import SAMPLERS, SamplerSpec, ddim, sample_indices
from diffzoo.samplers.dpm_solver import singlestep_orders
from diffzoo.samplers.dpm_solver_pp import _ode_step
from diffzoo.samplers.grids import GRIDS, auto_grid, grid_objective, karras_sigmas, optimized_sigmas, sigma_tilde, solver_grid
from diffzoo.samplers.solver_api import level, time_of_lambda
from diffzoo.samplers.unipc import _update
from diffzoo.schedules import VESDE, VPSDE, DiscreteSchedule, linear_betas
from diffzoo.schedules.ladder import SigmaLadder

SOLVERS = ("edm_euler", "edm_heun", "dpm_solver", "dpmpp_2s", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc")
MU, S = 0.3, 0.5
GAUSSIAN = GaussianMixture([1.0], [[MU]], [S])
MIXTURE = GaussianMixture(weights=[0.3, 0.7], means=[[-0.6, 0.4], [0.5, -0.3]], covs=[0.1, 0.2], labels=[0, 1])
DDPM = DiscreteSchedule(linear_betas(1000))


def gaussian_target(process, x_T: torch.Tensor, t_top: float, t_last: float) -> torch.Tensor:
    """The exact output of a solver from ``x_T`` at ``t_top`` whose last level is ``t_last`` (module docstring)."""
    top, last = sigma_tilde(process, t_top), sigma_tilde(process, t_last)
    x_tilde = x_T / process.alpha_sigma(t_top)[0]
    return MU + (x_tilde - MU) * math.sqrt(S**2 + last**2) / math.sqrt(S**2 + top**2) * S**2 / (S**2 + last**2)


def loglog_slope(ks, errors) -> float:
    """Least-squares slope of −log(error) against log(K)."""
    x = torch.log(torch.tensor(ks, dtype=torch.float64))
    y = -torch.log(torch.tensor(errors, dtype=torch.float64))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


# ---------------------------------------------------------------- DPM-Solver-1 = DDIM
def test_dpm_solver_order_one_is_ddim_to_float_precision():
    """DPM-Solver-1 (Lu et al. 2022a, §4.1) is DDIM with η = 0 in λ: on DDIM's own grid (leading = k·T/S)
    the two agree to float64 round-off, in both call forms."""
    den = mixture_denoiser(MIXTURE, DDPM, conditional=False)
    x_T = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert solver_grid(DDPM, 10, "leading") == sorted(DDPM.time_grid(10, "uniform"), reverse=True)
    a = SAMPLERS["dpm_solver"](den, x_T, 10, order=1, grid="leading")
    b = ddim(den, x_T, 10)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)

    def eps_fn(x, t):
        return den.predict(x, t.to(torch.float64)).eps

    c = SAMPLERS["dpm_solver"](eps_fn, DDPM, x_T, steps=10, order=1, grid="leading")
    assert torch.allclose(c, b, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- convergence on Gaussian data
CASES = [  # (sampler, options, global order)
    ("edm_euler", {}, 1), ("edm_heun", {}, 2), ("dpm_solver", dict(order=1), 1), ("dpm_solver", dict(order=2), 2),
    ("dpm_solver", dict(order=3, fast=False), 3), ("dpmpp_2s", {}, 2), ("dpmpp_2m", {}, 2),
    ("unipc", dict(order=2, variant="bh1"), 3), ("unipc", dict(order=2, variant="bh2"), 3),
    ("unipc", dict(order=2, corrector=False), 2),
]


@pytest.mark.parametrize("name,options,order", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_error_on_gaussian_data_falls_at_the_order_rate(name, options, order):
    """Error against the closed-form ODE solution on the uniform-λ grid, NFE 12 → 96: the log-log slope is
    at least ``order − 0.5``. (Multistep solvers start with a first-order step — the reference codes'
    warm-up — whose O(h²) local error caps 2M / 3M at global order 2; 3M and UniC-3 are checked per step below.)"""
    process = VPSDE()
    den = mixture_denoiser(GAUSSIAN, process, conditional=False)
    x_T = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64)[:, None]
    fn = SAMPLERS[name]
    ks, errors = [12, 24, 48, 96], []
    for K in ks:
        times = solver_grid(process, K if name != "edm_heun" else (K + 1) // 2, "logsnr")
        out = fn(den, x_T, K, grid="logsnr", **options)
        errors.append(float((out - gaussian_target(process, x_T, times[0], times[-1])).abs().max()))
    assert errors[-1] < 0.05
    assert loglog_slope(ks, errors) >= order - 0.5, (errors, loglog_slope(ks, errors))


def _exact_history(process, lam_s: float, h: float, n: int, x_T0: float = 1.7):
    """Levels λ_s − j h (j = n−1 … 0) on one exact ODE trajectory with their exact x̂₀ → [(Level, x, x̂₀)]."""
    out = []
    for j in reversed(range(n)):
        lv = level(process, time_of_lambda(process, lam_s - j * h))
        sig = lv.sigma / lv.alpha
        x_tilde = MU + (x_T0 - MU) * math.sqrt(S**2 + sig**2)  # x̃ − μ ∝ √(s² + σ̃²)
        x0 = MU + S**2 / (S**2 + sig**2) * (x_tilde - MU)
        out.append((lv, torch.tensor([[lv.alpha * x_tilde]], dtype=torch.float64), torch.tensor([[x0]], dtype=torch.float64)))
    return out


def _local_errors(step, order_hist: int, hs) -> list[float]:
    process = VPSDE()
    errors = []
    for h in hs:
        hist = _exact_history(process, 0.0, h, order_hist)
        t_hist = _exact_history(process, h, h, 1)[0]
        x_new = step(process, hist, t_hist[0])
        errors.append(float((x_new - t_hist[1]).abs()))
    return errors


@pytest.mark.parametrize("k,local_order", [(2, 3), (3, 4)])
def test_multistep_dpmpp_local_error(k, local_order):
    """One 2M / 3M step from an exact history: local error O(h^{k+1})."""
    hs = [0.4, 0.2, 0.1, 0.05]
    errs = _local_errors(lambda p, hist, t: _ode_step(hist[-1][1], [(lv, x0) for lv, _, x0 in hist], t, k), k, hs)
    assert loglog_slope([1 / h for h in hs], errs) >= local_order - 0.5, errs


@pytest.mark.parametrize("k,variant", [(2, "bh1"), (3, "bh1"), (3, "bh2")])
def test_unipc_corrector_raises_the_local_order(k, variant):
    """UniP-k has local error O(h^{k+1}); UniC-k at the predicted point one order more (UniPC Theorem 3.1)."""
    gaussian = mixture_denoiser(GAUSSIAN, VPSDE(), conditional=False)
    hs = [0.4, 0.2, 0.1, 0.05]

    def predictor(process, hist, t):
        return _update(hist[-1][1], [(lv, x0) for lv, _, x0 in hist], t, k, variant, None)

    def corrected(process, hist, t):
        pairs = [(lv, x0) for lv, _, x0 in hist]
        x_pred = _update(hist[-1][1], pairs, t, k, variant, None)
        return _update(hist[-1][1], pairs, t, k, variant, gaussian.predict(x_pred, t.t).x0)

    p_slope = loglog_slope([1 / h for h in hs], _local_errors(predictor, k, hs))
    c_slope = loglog_slope([1 / h for h in hs], _local_errors(corrected, k, hs))
    assert p_slope >= k + 1 - 0.5
    assert c_slope >= k + 2 - 0.5


# ---------------------------------------------------------------- grids
def test_karras_grid_is_edm_eq5_by_hand():
    """EDM eq. 5 with σ_max = 80, σ_min = 0.002, N = 5, ρ = 7, term by term; on the VE SDE σ̃ = σ."""
    by_hand = [(80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(5)]
    assert torch.allclose(karras_sigmas(80.0, 0.002, 5), torch.tensor(by_hand, dtype=torch.float64), rtol=1e-12)
    ve = VESDE(sigma_min=0.002, sigma_max=80.0)
    levels = [sigma_tilde(ve, t) for t in solver_grid(ve, 5, "karras")]
    assert levels[0] == pytest.approx(80.0, rel=1e-9)
    lo = sigma_tilde(ve, ve.sampling_eps)
    expected = [(80 ** (1 / 7) + i / 4 * (lo ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(5)]
    assert levels == pytest.approx(expected, rel=1e-9)
    # a DDPM table: the same eq. 5 in σ̃ = σ/α, mapped to real-valued indices through λ = −log σ̃
    top, bottom = sigma_tilde(DDPM, DDPM.t_max), sigma_tilde(DDPM, 0.0)
    ddpm_levels = [sigma_tilde(DDPM, t) for t in solver_grid(DDPM, 6, "karras")]
    assert ddpm_levels == pytest.approx(karras_sigmas(top, bottom, 6).tolist(), rel=1e-8)


@pytest.mark.parametrize("process", [DDPM, VPSDE(), VESDE()], ids=["ddpm", "vp", "ve"])
def test_logsnr_grid_is_uniform_in_lambda(process):
    times = solver_grid(process, 8, "logsnr")
    lam = process.lambda_(torch.tensor(times, dtype=torch.float64))
    steps = lam[1:] - lam[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-7)
    assert times[0] == process.t_max and times[-1] == pytest.approx(process.sampling_eps, abs=1e-9)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("process", [DDPM, VPSDE(), VESDE()], ids=["ddpm", "vp", "ve"])
def test_every_grid_decreases_from_the_top(process, grid):
    times = solver_grid(process, 6, grid)
    assert len(times) == 6 and all(a > b for a, b in zip(times, times[1:]))
    assert times[0] <= process.t_max and times[-1] >= process.sampling_eps


def test_uniform_grids_follow_diffusers_spacings():
    """diffusers' timestep_spacing on T = 1000 and 10 steps (Lin et al. 2024, Table 2), unrounded."""
    assert solver_grid(DDPM, 10, "leading") == [900.0 - 100.0 * k for k in range(10)]
    assert solver_grid(DDPM, 10, "trailing") == [999.0 - 100.0 * k for k in range(10)]
    assert solver_grid(DDPM, 10, "linspace") == pytest.approx([999.0 * (1 - k / 9) for k in range(10)])


@pytest.mark.parametrize("steps", [4, 6, 10])
def test_optimized_grid_beats_uniform_lambda_on_its_objective(steps):
    top, bottom = sigma_tilde(DDPM, DDPM.t_max), sigma_tilde(DDPM, 0.0)
    uniform = torch.exp(torch.linspace(math.log(top), math.log(bottom), steps, dtype=torch.float64))
    optimized = torch.tensor(optimized_sigmas(top, bottom, steps), dtype=torch.float64)
    assert optimized[0] == pytest.approx(top) and bool((optimized[1:] < optimized[:-1]).all())
    assert float(grid_objective(optimized)) < 0.9 * float(grid_objective(uniform))


def test_grid_errors_name_the_key():
    with pytest.raises(ValueError, match="sampler.grid"):
        solver_grid(DDPM, 5, "cosine")
    with pytest.raises(ValueError, match="sampler.grid"):
        solver_grid(SigmaLadder(), 4, "karras")
    assert solver_grid(SigmaLadder(), 4, "logsnr") == pytest.approx([1.0, 0.1 ** (2 / 3), 0.1 ** (4 / 3), 0.01])
    with pytest.raises(ValueError, match="sampler.order"):
        SAMPLERS["dpm_solver"](mixture_denoiser(MIXTURE, DDPM, conditional=False), torch.zeros(2, 2), 5, order=4)


# ---------------------------------------------------------------- NFE, call forms, specs
@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("steps", [1, 4, 7, 10])
def test_plan_nfe_equals_counted_nfe(name, steps):
    den = mixture_denoiser(MIXTURE, DDPM, conditional=False)
    calls = {"n": 0}
    predict = den.predict

    def counting(x, t, **cond):
        calls["n"] += 1
        return predict(x, t, **cond)

    den.predict = counting
    reports = []
    SAMPLERS[name](den, torch.randn(3, 2), steps, callback=lambda info: reports.append(info))
    plan = SAMPLERS[name].plan(DDPM, steps)
    assert reports[-1]["nfe"] == calls["n"] == plan.nfe <= steps
    assert {"i", "t", "x", "x0", "nfe"} <= set(reports[-1])


def test_dpm_solver_fast_orders_follow_section_3_4():
    assert singlestep_orders(9, 3) == [3, 3, 2, 1] and singlestep_orders(10, 3) == [3, 3, 3, 1]
    assert singlestep_orders(11, 3) == [3, 3, 3, 2] and singlestep_orders(9, 3, fast=False) == [3, 3, 3]
    assert singlestep_orders(5, 2) == [2, 2, 1]


@pytest.mark.parametrize("name", SOLVERS)
def test_discrete_call_form_evaluates_fractional_indices(name):
    """``solver(eps_fn, schedule, x_T, steps=K)``: eps_fn gets float indices (fractional on a λ grid) and
    the result is the denoiser form's."""
    den = mixture_denoiser(MIXTURE, DDPM, conditional=False)
    seen = []

    def eps_fn(x, t):
        seen.append(t)
        return den.predict(x, t.to(torch.float64)).eps

    x_T = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = SAMPLERS[name](eps_fn, DDPM, x_T, steps=6, grid="logsnr", generator=torch.Generator().manual_seed(2))
    b = SAMPLERS[name](den, x_T, 6, grid="logsnr", generator=torch.Generator().manual_seed(2))
    assert all(t.is_floating_point() for t in seen) and any(bool((t != t.round()).any()) for t in seen)
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("name", SOLVERS)
def test_sampler_spec_round_trip_and_config(name):
    spec = SamplerSpec(name, steps=10)
    assert SamplerSpec.of(spec.to_config()) == spec and spec.plan(DDPM).nfe <= 10
    cfg = OmegaConf.load(f"src/diffzoo/conf/sampler/{name}.yaml")
    from hydra.utils import instantiate

    from_config = instantiate(cfg)
    assert from_config.name == name and set(from_config.options) <= set(spec.describe())


@pytest.mark.parametrize("name,options", [("dpmpp_2m_sde", {}), ("edm_heun", dict(s_churn=10.0))])
def test_stochastic_solvers_draw_noise_per_sample(name, options):
    """Sample i depends on (seed, i) only: the same rows from a batch of 6 and a batch of 3."""
    den = mixture_denoiser(MIXTURE, DDPM, conditional=False)
    spec = SamplerSpec(name, steps=8, **options)
    full = sample_indices(den, spec, range(6), seed=5, shape=(2,))
    part = sample_indices(den, spec, [3, 4, 5], seed=5, shape=(2,))
    assert torch.allclose(full.x[3:], part.x, atol=1e-6)
    again = sample_indices(den, spec.with_options(), range(6), seed=6, shape=(2,))
    assert not torch.allclose(full.x, again.x)


def test_sde_dpmpp_first_order_step_is_the_ddpm_posterior():
    """SDE-DPM-Solver++'s first-order step draws from q(x_s | x_t, x̂₀) (DDPM eqs. 6–7): with two grid
    points (one step, then x̂₀) on DDIM's grid it is DDIM with η = 1 (DDIM eq. 16), noise for noise."""
    den = mixture_denoiser(MIXTURE, DDPM, conditional=False)
    x_T = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a = SAMPLERS["dpmpp_2m_sde"](den, x_T, 2, grid="leading", generator=torch.Generator().manual_seed(9))
    b = ddim(den, x_T, 2, eta=1.0, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_classifier_free_guidance_with_dpmpp_2m():
    """CFG (Ho & Salimans 2022) is a denoiser: w = 0 is the conditional model; w = 3 pushes the samples of
    class 0 further from class 1's component than the conditional model does."""
    den = mixture_denoiser(MIXTURE, DDPM)
    labels = torch.zeros(200, dtype=torch.long)
    spec = SamplerSpec("dpmpp_2m", steps=10)
    guided0 = sample_indices(den, spec, range(200), seed=0, shape=(2,), guidance=ClassifierFreeGuidance(0.0), labels=labels)
    cond = sample_indices(den, spec, range(200), seed=0, shape=(2,), labels=labels)
    assert torch.allclose(guided0.x, cond.x, atol=1e-6)
    guided3 = sample_indices(den, spec, range(200), seed=0, shape=(2,), guidance=ClassifierFreeGuidance(3.0), labels=labels)
    other = MIXTURE.means[1].float()
    assert (guided3.x - other).norm(dim=1).mean() > (cond.x - other).norm(dim=1).mean()


@pytest.mark.parametrize("name", SOLVERS)
def test_solvers_run_on_ve_sde_and_a_sigma_ladder(name):
    for process in (VESDE(sigma_max=10.0), SigmaLadder(sigma_max=3.0, sigma_min=0.01, L=10)):
        den = mixture_denoiser(MIXTURE, process, conditional=False)
        out = SAMPLERS[name](den, 3.0 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0)), 8, grid="logsnr",
                             generator=torch.Generator().manual_seed(1))
        assert torch.isfinite(out).all() and out.abs().max() < 3


# ---------------------------------------------------------------- a process whose signal vanishes at t_max
@pytest.mark.parametrize("name", SOLVERS)
def test_solvers_start_below_the_top_of_rectified_flow(name):
    """Rectified flow has α(1) = 0 (σ̃ = ∞) and σ(0) = 0: the grids run from σ̃ = SIGMA_TILDE_MAX to
    SIGMA_TILDE_MIN instead, and every deterministic solver converges to the exact Gaussian flow map from
    there (module docstring) at least at first order; the SDE solver draws N(μ, s²)."""
    from diffzoo.samplers.grids import SIGMA_TILDE_MAX, top_time
    from diffzoo.schedules.flow import RectifiedFlow

    process = RectifiedFlow()
    t_top = top_time(process)
    assert t_top < 1.0 and sigma_tilde(process, t_top) == pytest.approx(SIGMA_TILDE_MAX, rel=1e-6)
    den = mixture_denoiser(GAUSSIAN, process, conditional=False)
    x_T = torch.randn(256, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    errors = []
    for nfe in (60, 120):
        spec, times = SamplerSpec(name, nfe), []
        out = spec(den, x_T, generator=torch.Generator().manual_seed(0), callback=lambda d: times.append(float(d["t"])))
        assert torch.isfinite(out).all() and max(times) <= t_top + 1e-12
        if name == "dpmpp_2m_sde":  # the data distribution, within 4 standard errors of mean and std
            assert abs(float(out.mean()) - MU) < 4 * S / 16 and abs(float(out.std()) - S) < 4 * S / math.sqrt(2 * 256)
            return
        steps = nfe // 2 if name in ("edm_heun", "dpmpp_2s") else nfe
        t_last = solver_grid(process, steps, auto_grid(process, "trailing") if spec.describe()["grid"] == "auto"
                             else spec.describe()["grid"])[-1]
        errors.append(float((out - gaussian_target(process, x_T, t_top, t_last)).abs().max()))
    assert errors[1] < 0.6 * errors[0] and errors[1] < 3e-2, errors  # first order halves the error; higher more


def test_heun_auto_grid_is_edms_own_on_variance_exploding_processes():
    """``edm_heun``'s default grid: EDM eq. 5 (ρ = 7) on EDM's process and the VE SDE, ``trailing`` on a
    DDPM table (the only grid stable at NFE 5 there), a σ ladder's own levels."""
    from diffzoo.samplers.edm import _plan_heun
    from diffzoo.schedules import EDMProcess

    for process, expected in ((EDMProcess(), "karras"), (VESDE(), "karras"), (DDPM, "trailing"), (VPSDE(), "trailing"),
                              (SigmaLadder(sigma_max=3.0, sigma_min=0.01, L=10), "logsnr")):
        assert auto_grid(process, "trailing") == expected, type(process).__name__
        assert _plan_heun(process, 9).grid == sorted(solver_grid(process, 5, expected))


@pytest.mark.parametrize("name", SOLVERS)
def test_plan_announces_the_grid_the_sampler_walks(name):
    """With every option at its default, the times a solver reports are the grid its plan announced."""
    den = mixture_denoiser(MIXTURE, DDPM, conditional=False)
    spec = SamplerSpec(name, 10)
    times = []
    spec(den, torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), generator=torch.Generator().manual_seed(1),
         callback=lambda d: times.append(float(d["t"])))
    assert set(times) <= set(spec.plan(DDPM).grid) and max(times) == max(spec.plan(DDPM).grid), name
