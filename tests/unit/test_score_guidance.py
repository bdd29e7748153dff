"""Score SDE class-conditional sampling (Song et al. 2021, §5 eq. 14, App. I.1) against closed forms:
a labelled Gaussian mixture has the exact score and the exact noisy classifier under every SDE."""

import functools

import pytest
import torch
from torch import nn

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.errors import ConfigError
from diffzoo.guidance import ScoreClassifierGuidance
from diffzoo.lit import SDEClassifierModule
from diffzoo.lit.sde_classifier import t_ranges
from diffzoo.networks.mlp import TimeMLP
from diffzoo.samplers import pc, probability_flow_ode
from diffzoo.schedules import DiscreteSchedule, VESDE, VPSDE, SubVPSDE, linear_betas

TIME_SCALE = 999.0


@pytest.fixture(scope="module")
def gm():
    # class 0: one component (prior 0.4); class 1: two components; apart enough that a sample's class is clear.
    return GaussianMixture([0.4, 0.3, 0.3], [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], [0.3, 0.3, 0.3], labels=[0, 1, 1])


class ExactClassifier(nn.Module):
    """``classifier(x, c·t) → log p_t(k | x)`` for every class k, the mixture's exact noisy classifier
    under ``sde`` (differentiable in x, so the guidance's autograd path is the one under test)."""

    def __init__(self, gm, sde, time_scale=TIME_SCALE):
        super().__init__()
        self.gm, self.sde, self.time_scale, self.num_classes = gm, sde, time_scale, gm.num_classes

    def forward(self, x, t_in):
        t = t_in.double() / self.time_scale
        a, s = self.sde.alpha(t), self.sde.sigma(t)
        return torch.stack([self.gm.class_log_prob(x, k, a, s) for k in range(self.num_classes)], -1)


def exact_model_fn(gm, sde):
    """An unconditional score model ``model_fn(x, t, y)`` (ignores y): the mixture's exact ∇ log p_t."""
    return lambda x, t, y: gm.score(x, sde.alpha(t), sde.sigma(t)).to(x.dtype)


SDES = {"vp": lambda: VPSDE(0.1, 20.0, N=100), "subvp": lambda: SubVPSDE(0.1, 20.0, N=100),
        "ve": lambda: VESDE(0.01, 10.0, N=100)}


@pytest.mark.parametrize("kind", sorted(SDES))
def test_guided_score_at_scale_one_is_the_exact_conditional_score(gm, kind):
    sde = SDES[kind]()
    guidance = ScoreClassifierGuidance(ExactClassifier(gm, sde), scale=1.0, time_scale=TIME_SCALE)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for y in (0, 1):
        score_fn = guidance(exact_model_fn(gm, sde), sde, torch.tensor(y))
        for t in (0.01, 0.1, 0.3, 0.7, 1.0):
            tt = torch.full((64,), t, dtype=torch.float64)
            # Score SDE eq. 14: ∇ log p_t(x | y) = ∇ log p_t(x) + ∇ log p_t(y | x)
            want = gm.score(x, sde.alpha(tt), sde.sigma(tt), y=y)
            got = score_fn(x, tt)
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), (kind, y, t)


def test_scale_multiplies_the_classifier_gradient_and_zero_is_unguided(gm):
    sde = VPSDE(N=100)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    t = torch.full((16,), 0.2)
    a, s = sde.alpha(t), sde.sigma(t)
    grad_fn = lambda x, t, y: gm.class_log_prob_grad(x, y, sde.alpha(t), sde.sigma(t)).float()  # noqa: E731
    model_fn = exact_model_fn(gm, sde)
    y = torch.ones(16, dtype=torch.long)
    base = model_fn(x, t, None)
    for scale in (0.0, 2.5):
        got = ScoreClassifierGuidance(grad_fn=grad_fn, scale=scale)(model_fn, sde, y)(x, t)
        assert torch.allclose(got, base + scale * gm.class_log_prob_grad(x, 1, a, s).float(), atol=1e-5)
    with pytest.raises(ValueError, match="labels y"):
        ScoreClassifierGuidance(grad_fn=grad_fn)(model_fn, sde, None)(x, t)
    with pytest.raises(ValueError, match="exactly one of classifier"):
        ScoreClassifierGuidance()


def _posterior_class(gm, x):
    """The mixture's Bayes class of clean samples ``x`` ``[N, 2]``."""
    return torch.stack([gm.class_log_prob(x, k) for k in range(gm.num_classes)], -1).argmax(-1)


SAMPLERS = {
    "vp-pc-em": (lambda: VPSDE(0.1, 20.0, N=60), functools.partial(pc, predictor="euler_maruyama", corrector="none")),
    "ve-pc-rd-langevin": (lambda: VESDE(0.01, 10.0, N=60), functools.partial(pc, predictor="reverse_diffusion",
                                                                             corrector="langevin", snr=0.16)),
    "vp-ode": (lambda: VPSDE(0.1, 20.0, N=60), functools.partial(probability_flow_ode, rtol=1e-3, atol=1e-3)),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_guided_sampling_draws_the_target_class(gm, name):
    make_sde, sampler = SAMPLERS[name]
    sde = make_sde()
    n, target = 400, 0  # class 0 has prior mass 0.4
    x_T = sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(0))
    model_fn = exact_model_fn(gm, sde)
    guidance = ScoreClassifierGuidance(ExactClassifier(gm, sde), scale=1.0)
    guided = sampler(guidance(model_fn, sde, torch.tensor(target)), sde, x_T, generator=torch.Generator().manual_seed(1))
    unguided = sampler(lambda x, t: model_fn(x, t, None), sde, x_T, generator=torch.Generator().manual_seed(1))
    frac_guided = float((_posterior_class(gm, guided) == target).float().mean())
    frac_unguided = float((_posterior_class(gm, unguided) == target).float().mean())
    assert frac_guided > 0.9, (name, frac_guided)
    assert abs(frac_unguided - 0.4) < 0.1, (name, frac_unguided)


def test_check_model_names_what_differs():
    g = ScoreClassifierGuidance(grad_fn=lambda x, t, y: x, time_scale=999.0, sde=VPSDE(0.1, 20.0, N=1000),
                                data_transform="none")
    g.check_model(VPSDE(0.1, 20.0, N=50), 999.0, "none")  # the discretisation N may differ
    with pytest.raises(ConfigError, match="VESDE"):
        g.check_model(VESDE(), 999.0, "none")
    with pytest.raises(ConfigError, match="beta_max"):
        g.check_model(VPSDE(0.1, 10.0), 999.0, "none")
    with pytest.raises(ConfigError, match="model.time_scale=1"):
        g.check_model(VPSDE(0.1, 20.0), 1.0, "none")
    with pytest.raises(ConfigError, match="model.data_transform=unit"):
        g.check_model(VPSDE(0.1, 20.0), 999.0, "unit")


# ---------------------------------------------------------------- the time-dependent classifier


def _toy_classifier(seed=0, **kw):
    torch.manual_seed(seed)
    net = TimeMLP(dim=2, hidden=64, depth=2, time_embed_dim=32, out_dim=2)
    return SDEClassifierModule(net, VPSDE(0.1, 20.0), functools.partial(torch.optim.Adam, lr=3e-3), data_shape=(2,), **kw)


def test_classifier_sees_the_sde_marginal_and_the_score_nets_time_input(gm):
    seen = {}

    class Probe(nn.Module):
        in_channels, image_size = 2, None

        def forward(self, x, t_in):
            seen.update(x=x, t_in=t_in)
            return torch.zeros(x.shape[0], 2)

    sde = VESDE(0.01, 5.0)
    module = SDEClassifierModule(Probe(), sde, functools.partial(torch.optim.Adam), data_shape=(2,), data_transform="unit")
    x0 = torch.full((4, 2), 0.6)
    t = torch.tensor([0.1, 0.4, 0.7, 1.0])
    gen = torch.Generator().manual_seed(3)
    module.noised_logits(x0, t, generator=gen)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    # VE perturbation kernel N(x0, σ(t)² I) (Score SDE eq. 31) on the (x + 1)/2 coordinates of the VE models
    assert torch.allclose(seen["x"], 0.8 + sde.sigma(t)[:, None].float() * z, atol=1e-5)
    assert torch.allclose(seen["t_in"], 999.0 * t)


def test_classifier_training_step_runs_and_accuracy_rises_as_t_falls(gm):
    module = _toy_classifier()
    opt = module.configure_optimizers()
    gen = torch.Generator().manual_seed(0)
    for step in range(250):
        x, y = gm.sample(256, generator=gen, return_labels=True)
        loss = module.training_step({"x": x, "y": y}, step)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = gm.sample(2000, generator=torch.Generator().manual_seed(9), return_labels=True)
    acc = list(module.accuracy_by_t(x, y, generator=torch.Generator().manual_seed(2)).values())
    assert acc[0] > 0.95, acc  # t ∈ [0, 0.25]: the classes barely overlap
    assert acc[-1] < acc[0] - 0.2, acc  # t ∈ [0.75, 1]: x(t) ≈ N(0, I) carries almost no label
    assert all(a >= b - 0.05 for a, b in zip(acc, acc[1:])), acc


def test_classifier_rejects_a_discrete_schedule_and_bad_options():
    net = TimeMLP(dim=2, hidden=8, depth=1, time_embed_dim=8, out_dim=2)
    opt = functools.partial(torch.optim.Adam)
    with pytest.raises(ConfigError, match="schedule=vpsde"):
        SDEClassifierModule(net, DiscreteSchedule(linear_betas(10)), opt, data_shape=(2,))
    with pytest.raises(ConfigError, match="model.data_transform"):
        SDEClassifierModule(net, VPSDE(), opt, data_shape=(2,), data_transform="zero_one")
    with pytest.raises(ConfigError, match="model.eps"):
        SDEClassifierModule(net, VPSDE(), opt, data_shape=(2,), eps=0.0)
    assert t_ranges(1e-5, 1.0, 4) == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
