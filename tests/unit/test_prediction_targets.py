"""Training targets of the DDPM family (ε / x₀ / v, Salimans & Ho 2022 §4) and Min-SNR-γ weighting
(Hang et al. 2023), against closed forms: exact conversions, the loss at the exact optimum for Gaussian
data, hand-computed SNR weights, and checkpoints without the option reading as ε-prediction."""

import math

import pytest
import torch

from diffzoo.denoisers import Denoiser
from diffzoo.errors import ConfigError
from diffzoo.lit import DiffusionModule
from diffzoo.objectives import HybridLoss, SimpleLoss
from diffzoo.objectives.weighting import min_snr_weight
from diffzoo.objectives.vlb import mean_flat
from diffzoo.schedules import DiscreteSchedule, linear_betas

T = 1000


@pytest.fixture(scope="module")
def schedule():
    return DiscreteSchedule(linear_betas(T, 1e-4, 0.02))


# ---------------------------------------------------------------------- conversions (float64)
@pytest.mark.parametrize("t", [0, 1, 0.5, 250, 500, 998, 998.5, T - 1])
def test_conversions_invert_exactly(schedule, t):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64)
    a, s = schedule.alpha_sigma(t)
    x = a * x0 + s * eps
    tol = dict(rtol=0, atol=1e-11)
    torch.testing.assert_close(schedule.x0_from_eps(x, t, eps), x0, **tol)
    torch.testing.assert_close(schedule.eps_from_x0(x, t, x0), eps, **tol)
    v = schedule.v_from(x0, eps, t)
    torch.testing.assert_close(v, a * eps - s * x0, rtol=0, atol=1e-15)  # Salimans & Ho §4
    x0_v, eps_v = schedule.from_v(x, t, v)
    torch.testing.assert_close(x0_v, x0, **tol)
    torch.testing.assert_close(eps_v, eps, **tol)
    # per-sample times (the tensor path) agree with the number path
    tt = torch.full((8,), float(t), dtype=torch.float64)
    torch.testing.assert_close(schedule.from_v(x, tt, schedule.v_from(x0, eps, tt))[0], x0, **tol)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_denoiser_reads_each_target_the_same(schedule, prediction):
    """A network that outputs the exact ε / x₀ / v of (x₀, ε) gives the same x̂₀ and ε̂ through the denoiser."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 2, dtype=torch.float64, generator=g)
    eps = torch.randn(4, 2, dtype=torch.float64, generator=g)
    t = 700
    a, s = schedule.alpha_sigma(t)
    x = a * x0 + s * eps
    native = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction]
    p = Denoiser(lambda x_, tau: native, schedule, prediction).predict(x, t)
    torch.testing.assert_close(p.x0, x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.eps, eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.v, native if prediction == "v" else a * eps - s * x0, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- the loss at the exact optimum
S = 0.5  # data x₀ ~ N(0, S² I)


def optimal_net(schedule, prediction):
    """E[target | x_t] for Gaussian data N(0, S² I): x_t ~ N(0, (α²S² + σ²) I)."""

    def net(x_t, tau):
        t = tau.round().long()
        a = schedule.alpha(t).to(x_t.dtype)[:, None]
        s = schedule.sigma(t).to(x_t.dtype)[:, None]
        var = a * a * S * S + s * s
        x0 = a * S * S * x_t / var
        eps = s * x_t / var
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction]

    return net


def residual_variance(schedule, t, prediction):
    """Var[target | x_t] per dimension: ε: α²S²/(α²S²+σ²); x₀: S²σ²/(α²S²+σ²); v: S²/(α²S²+σ²) (α²+σ²=1)."""
    a, s = schedule.alpha(t), schedule.sigma(t)
    var = a * a * S * S + s * s
    return {"eps": a * a * S * S / var, "x0": S * S * s * s / var, "v": S * S / var}[prediction]


@pytest.mark.parametrize("weighting", ["none", "min_snr"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_loss_at_the_optimum_is_the_residual_variance(schedule, prediction, weighting):
    B, D = 4096, 16
    torch.manual_seed(3)
    x0 = S * torch.randn(B, D)
    loss = SimpleLoss(prediction=prediction, weighting=weighting)
    out = loss(optimal_net(schedule, prediction), schedule, x0)
    w = min_snr_weight(schedule.snr(out.t), prediction, 5.0) if weighting == "min_snr" else torch.ones(B, dtype=torch.float64)
    V = w * residual_variance(schedule, out.t, prediction)
    expected = float(V.mean())
    # per sample: V_i χ²_D / D, variance 2 V_i² / D; six standard errors of the batch mean
    tol = 6 * math.sqrt(float((2 * V**2 / D).sum())) / B
    assert abs(float(out.loss) - expected) < tol, (float(out.loss), expected, tol)


def test_min_snr_makes_the_three_targets_one_loss(schedule):
    """ε − ε̂ = −(α/σ)(x̂₀ − x₀), v − v̂ = (1/σ)(x̂₀ − x₀): with the Min-SNR weights every target's loss is
    min(SNR, γ)·‖x̂₀ − x₀‖² for the same x̂₀."""
    x0 = 0.7 * torch.randn(512, 8, generator=torch.Generator().manual_seed(4))

    def guess_x0(x_t, tau):  # an arbitrary, far from optimal, x̂₀
        return 0.3 * x_t + 0.1

    def as_target(prediction):
        def net(x_t, tau):
            t = tau.round().long()
            a = schedule.alpha(t).to(torch.float64)[:, None]
            s = schedule.sigma(t).to(torch.float64)[:, None]
            xt, x0h = x_t.double(), guess_x0(x_t, tau).double()
            eps = (xt - a * x0h) / s
            return {"eps": eps, "x0": x0h, "v": a * eps - s * x0h}[prediction].float()

        return net

    losses = {}
    for prediction in ("eps", "x0", "v"):
        torch.manual_seed(5)
        losses[prediction] = SimpleLoss(prediction, "min_snr", 5.0)(as_target(prediction), schedule, x0).per_sample
    torch.testing.assert_close(losses["eps"], losses["x0"], rtol=2e-3, atol=0)
    torch.testing.assert_close(losses["v"], losses["x0"], rtol=2e-3, atol=0)


def test_min_snr_weights_at_known_t(schedule):
    betas = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]  # DDPM's linear table, by hand
    abar = lambda t: math.exp(math.fsum(math.log1p(-b) for b in betas[: t + 1]))  # noqa: E731
    for t in (0, 100, 400, T - 1):
        snr = abar(t) / (1 - abar(t))
        got = {p: float(min_snr_weight(schedule.snr(torch.tensor([t])), p, 5.0)[0]) for p in ("eps", "x0", "v")}
        clipped = min(snr, 5.0)
        assert got["eps"] == pytest.approx(clipped / snr, rel=1e-9)
        assert got["x0"] == pytest.approx(clipped, rel=1e-9)
        assert got["v"] == pytest.approx(clipped / (snr + 1), rel=1e-9)
    # t = 0: ᾱ = 1 − 10⁻⁴, SNR = 9999
    w0 = min_snr_weight(schedule.snr(torch.tensor([0])), "eps", 5.0)
    assert float(w0[0]) == pytest.approx(5.0 / 9999.0, rel=1e-9)
    assert float(min_snr_weight(schedule.snr(torch.tensor([0])), "v", 5.0)[0]) == pytest.approx(5.0 / 10000.0, rel=1e-9)
    # late t: SNR < γ, so ε's weight is 1 and x₀'s is the SNR itself
    assert float(min_snr_weight(schedule.snr(torch.tensor([400])), "eps", 5.0)[0]) == 1.0


# ---------------------------------------------------------------------- one source of truth, and old checkpoints
class TinyNet(torch.nn.Module):
    dim = 2

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x, t, **cond):
        return self.lin(x)


def _module(objective):
    return DiffusionModule(TinyNet(), DiscreteSchedule(linear_betas(10, 1e-4, 0.02)), objective, {"name": "ddim", "steps": 5},
                           lambda params: torch.optim.SGD(params, lr=0.1), ema_decay=None, data_shape=(2,))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_module_reads_the_objectives_prediction(prediction):
    module = _module(SimpleLoss(prediction=prediction))
    assert module.prediction == prediction and module.denoiser().prediction == prediction


def test_objective_without_prediction_is_eps_as_before(schedule):
    """A checkpoint's objective config from before the option (no keys) builds eps-prediction, with the
    loss DDPM eq. 14 computed exactly as before; an objective with no prediction (L_hybrid) is ε too."""
    from hydra.utils import instantiate

    old = instantiate({"_target_": "diffzoo.objectives.SimpleLoss"})
    assert (old.prediction, old.weighting) == ("eps", "none")
    assert _module(old).denoiser().prediction == "eps"
    assert _module(HybridLoss()).prediction == "eps"
    net = lambda x, t: 0.5 * x + 1e-3 * t[:, None]  # noqa: E731
    x0 = torch.randn(64, 4, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(7)
    got = old(net, schedule, x0)
    torch.manual_seed(7)  # the code before the option, line for line
    t = torch.randint(0, schedule.T, (64,))
    noise = torch.randn_like(x0)
    ref = mean_flat((noise - net(schedule.q_sample(x0, t, noise), schedule.timesteps[t].float())) ** 2)
    assert torch.equal(got.per_sample, ref) and torch.equal(got.t, t)


def test_invalid_target_and_weighting_name_the_key():
    with pytest.raises(ConfigError, match=r"objective\.prediction.*'eps', 'x0', 'v'"):
        SimpleLoss(prediction="score")
    with pytest.raises(ConfigError, match=r"objective\.weighting.*'none', 'min_snr'"):
        SimpleLoss(weighting="p2")
    with pytest.raises(ConfigError, match=r"objective\.snr_gamma"):
        SimpleLoss(weighting="min_snr", snr_gamma=0)


@pytest.mark.parametrize("name", ["ddpm_digits", "iddpm_digits"])
def test_legacy_checkpoints_load_as_eps_prediction(name):
    """Checkpoints written before the option (their stored objective config has no ``prediction``)
    build as ε-prediction; their samples are checked bit for bit in tests/integration/test_denoiser_core.py."""
    from pathlib import Path

    from diffzoo.checkpoints import load_checkpoint
    from diffzoo.lit.build import load_module

    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "legacy" / f"{name}.ckpt"
    assert "prediction" not in load_checkpoint(ckpt)["diffzoo"]["config"]["objective"]
    module = load_module(ckpt)
    assert module.prediction == "eps" and module.denoiser().prediction == "eps"
