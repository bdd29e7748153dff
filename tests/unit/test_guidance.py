"""Guidance against closed forms: exact scores and classifiers of a labelled Gaussian mixture
(PAPERS.md §8d, §9d)."""

import pytest
import torch
from torch import nn

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.denoisers import mixture_denoiser
from diffzoo.denoisers.legacy import schedule_positions
from diffzoo.errors import ConfigError
from diffzoo.guidance import ClassifierFreeGuidance, ClassifierGuidance, NoGuidance
from diffzoo.guidance.labels import class_grid, labels_for_indices
from diffzoo.samplers import SamplerSpec, ddim, ddpm
from diffzoo.schedules import DiscreteSchedule, linear_betas

NULL = 2  # the mixture has classes 0 and 1


@pytest.fixture(scope="module")
def gm():
    # class 0: one component; class 1: two components; they overlap, so guidance has work to do.
    return GaussianMixture([0.4, 0.3, 0.3], [[-0.8, 0.0], [0.8, 0.0], [0.0, 1.2]], [0.6, 0.5, 0.5], labels=[0, 1, 1])


@pytest.fixture(scope="module")
def schedule():
    return DiscreteSchedule(linear_betas(200, 1e-4, 0.04))


def _ab(schedule, t):
    return schedule.sqrt_alphas_cumprod[t], schedule.sqrt_one_minus_alphas_cumprod[t]


def uncond_model_fn(gm, schedule):
    """An unconditional model: ignores y (as DiffusionModule does when model.conditional=false)."""
    fn = exact_model_fn(gm, schedule)
    return lambda x, t, y: fn(x, t, None)


def exact_model_fn(gm, schedule, calls=None):
    """``model_fn(x, t, y)``: the exact ε* of the mixture, conditional on y (unconditional where y = NULL or None)."""

    def fn(x, t, y):
        if calls is not None:
            calls.append(x.shape[0])
        a, s = _ab(schedule, t)
        out = gm.eps(x, a, s).to(x.dtype)
        if y is not None:
            rows = y != NULL
            if bool(rows.any()):
                out[rows] = gm.eps(x[rows], a[rows], s[rows], y=y[rows]).to(x.dtype)
        return out

    return fn


class ExactClassifier(nn.Module):
    """logits_c = log p_t(c | x): the exact noisy classifier of the mixture, differentiable in x."""

    def __init__(self, gm, schedule):
        super().__init__()
        self.gm, self.schedule = gm, schedule

    def forward(self, x, t):
        a, s = _ab(self.schedule, t.long())
        return torch.stack([self.gm.class_log_prob(x, c, a, s) for c in range(2)], dim=-1)


def _points(n=64, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.5


@pytest.mark.parametrize("use_classifier", [True, False])
def test_classifier_guidance_at_scale_one_is_the_conditional_model(gm, schedule, use_classifier):
    """ADM §4: ∇log p(x_t) + ∇log p(y|x_t) = ∇log p(x_t|y), so ε̂ at s = 1 is the conditional ε*."""
    x, y = _points(), torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(1))
    grad_fn = None if use_classifier else (lambda x, t, y: gm.class_log_prob_grad(x, y, *_ab(schedule, t)))
    guidance = ClassifierGuidance(ExactClassifier(gm, schedule) if use_classifier else None, scale=1.0, grad_fn=grad_fn)
    eps_fn = guidance(uncond_model_fn(gm, schedule), schedule, y)
    for step in (0, 20, 120, 199):
        t = torch.full((64,), step)
        assert torch.allclose(eps_fn(x, t), gm.eps(x, *_ab(schedule, t), y=y), atol=1e-8)


def test_classifier_guidance_adds_s_times_the_classifier_gradient_to_the_score(gm, schedule):
    """Score SDE eq. 14 / ADM eq. 14 over the denoiser contract: the guided score is s_θ + s·∇log p(y|x_t),
    at integer and at real-valued t (the process interpolates α, σ between steps)."""
    base = mixture_denoiser(gm, schedule, conditional=False)
    grad_fn = lambda x, tau, y: gm.class_log_prob_grad(x, y, schedule.alpha(tau), schedule.sigma(tau))  # noqa: E731
    guided = ClassifierGuidance(scale=3.0, grad_fn=grad_fn).wrap(base).bind(y=torch.ones(64, dtype=torch.long))
    x = _points()
    for t in (50, 50.0, 123.4):
        a, s = schedule.alpha_sigma(t)
        expected = gm.score(x, a, s) + 3.0 * gm.class_log_prob_grad(x, torch.ones(64, dtype=torch.long), a, s)
        assert torch.allclose(guided.score(x, t), expected, atol=1e-8)


def test_guidance_of_the_null_branch_keeps_the_bound_null_label(gm, schedule):
    """ADM guides the *unconditional* model: classifier guidance around ``base.bind(y=∅)`` of a
    class-conditional model gets the target labels for its classifier, the model keeps ∅ — the guided score
    is the unconditional one plus s·∇log p(y|x_t), not the conditional one (a later label does not undo a bind)."""
    from diffzoo.denoisers.exact import NULL_LABEL

    base = mixture_denoiser(gm, schedule)
    y = torch.ones(64, dtype=torch.long)
    grad_fn = lambda x, tau, y: gm.class_log_prob_grad(x, y, schedule.alpha(tau), schedule.sigma(tau))  # noqa: E731
    null_branch = base.bind(y=torch.full_like(y, NULL_LABEL))
    guided = ClassifierGuidance(scale=2.0, grad_fn=grad_fn).wrap(null_branch).bind(y=y)
    x = _points()
    a, s = schedule.alpha_sigma(60)
    expected = gm.score(x, a, s) + 2.0 * gm.class_log_prob_grad(x, y, a, s)
    assert torch.allclose(guided.score(x, 60), expected, atol=1e-8)
    assert torch.allclose(null_branch.score(x, 60, y=y), gm.score(x, a, s), atol=1e-8)


def test_mean_form_carries_s_times_the_gradient_for_the_ancestral_sampler(gm, schedule):
    """ADM Algorithm 1: the prediction is the unguided one; the shift ``s·g`` travels with it and the
    ancestral sampler moves its mean by ``Σ·s·g`` (checked step by step against guided-diffusion below)."""
    base = mixture_denoiser(gm, schedule, conditional=False)
    grad_fn = lambda x, tau, y: gm.class_log_prob_grad(x, y, schedule.alpha(tau), schedule.sigma(tau))  # noqa: E731
    y = torch.zeros(64, dtype=torch.long)
    guided = ClassifierGuidance(scale=2.5, form="mean", grad_fn=grad_fn).wrap(base)
    x = _points()
    p, plain = guided.predict(x, 77, y=y), base.predict(x, 77)
    assert guided.mean_shift_form and torch.equal(p.eps, plain.eps)
    a, s = schedule.alpha_sigma(77)
    assert torch.allclose(p.mean_shift, 2.5 * gm.class_log_prob_grad(x, y, a, s), atol=1e-12)


def test_mean_form_rejects_a_schedule_the_sampler_does_not_walk(gm, schedule):
    sub = schedule.respace([0, 100, 199])
    eps_fn = ClassifierGuidance(scale=1.0, form="mean", grad_fn=lambda x, t, y: torch.zeros_like(x))(
        exact_model_fn(gm, schedule), sub, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="not steps of the schedule"):
        eps_fn(_points(4), torch.full((4,), 50))
    assert schedule_positions(sub, torch.tensor([0, 199, 100])).tolist() == [0, 2, 1]


def test_cfg_at_w0_is_the_conditional_model_and_costs_one_forward_otherwise(gm, schedule):
    x, y, t = _points(), torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(2)), torch.full((64,), 80)
    calls = []
    eps0 = ClassifierFreeGuidance(0.0)(exact_model_fn(gm, schedule, calls), schedule, y, NULL)(x, t)
    assert torch.allclose(eps0, gm.eps(x, *_ab(schedule, t), y=y), atol=1e-10)
    assert calls == [64]
    calls.clear()
    w = 2.0
    eps_w = ClassifierFreeGuidance(w)(exact_model_fn(gm, schedule, calls), schedule, y, NULL)(x, t)
    assert calls == [128]  # cond and uncond halves in ONE forward of the doubled batch
    expected = (1 + w) * gm.eps(x, *_ab(schedule, t), y=y) - w * gm.eps(x, *_ab(schedule, t))  # CFG eq. 6
    assert torch.allclose(eps_w, expected, atol=1e-10)


def test_cfg_is_classifier_guidance_with_the_implicit_classifier(gm, schedule):
    """CFG §3.2: ∇log p(x|c) + w(∇log p(x|c) − ∇log p(x)) = conditional model + w·∇log p(c|x)."""
    x, y, t, w = _points(), torch.ones(64, dtype=torch.long), torch.full((64,), 30), 1.5
    cfg = ClassifierFreeGuidance(w)(exact_model_fn(gm, schedule), schedule, y, NULL)
    cg = ClassifierGuidance(scale=w, grad_fn=lambda x, t, y: gm.class_log_prob_grad(x, y, *_ab(schedule, t)))(
        exact_model_fn(gm, schedule), schedule, y)
    assert torch.allclose(cfg(x, t), cg(x, t), atol=1e-8)


def test_learned_variance_channels_pass_through(gm, schedule):
    x, y, t = _points(8), torch.zeros(8, dtype=torch.long), torch.full((8,), 10)
    base = exact_model_fn(gm, schedule)

    def fn(x, t, y):  # ε then a constant "variance" output per row: 0.3 conditional, -0.3 unconditional
        return torch.cat([base(x, t, y), torch.where(y[:, None] == NULL, -0.3, 0.3).expand(-1, 2).to(x.dtype)], 1)

    out = ClassifierFreeGuidance(1.0)(fn, schedule, y, NULL)(x, t)
    assert out.shape == (8, 4) and torch.allclose(out[:, 2:], torch.full((8, 2), 0.3, dtype=out.dtype))  # the conditional half's
    grad_fn = lambda x, t, y: gm.class_log_prob_grad(x, y, *_ab(schedule, t))  # noqa: E731
    out = ClassifierGuidance(scale=2.0, grad_fn=grad_fn)(fn, schedule, y)(x, t)
    assert torch.allclose(out[:, 2:], torch.full((8, 2), 0.3, dtype=out.dtype))


def _sample(gm, schedule, guidance, y, sampler="ddim", n=1500, null=NULL):
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model_fn = uncond_model_fn(gm, schedule) if isinstance(guidance, ClassifierGuidance) else exact_model_fn(gm, schedule)
    eps_fn = guidance(model_fn, schedule, y, null)
    if sampler == "ddim":
        return ddim(eps_fn, schedule, x_T, steps=40)
    return ddpm(eps_fn, schedule, x_T, clip_x0=False, generator=torch.Generator().manual_seed(4))


def test_cfg_sharpens_the_guided_distribution_as_w_grows(gm, schedule):
    """The guided density ∝ p(x|c)^{1+w}/p(x)^w (CFG §3.2, Fig. 2): as w grows, samples of class c
    become more typical of c: the mean log p(c|x_0) rises and the within-class spread shrinks."""
    y = torch.zeros(1500, dtype=torch.long)
    log_pc, spread = [], []
    for w in (0.0, 1.0, 4.0):
        x0 = _sample(gm, schedule, ClassifierFreeGuidance(w), y)
        log_pc.append(float(gm.class_log_prob(x0, 0).mean()))
        spread.append(float(x0.var(0).sum()))
    assert log_pc[0] < log_pc[1] < log_pc[2]
    assert spread[0] > spread[2]
    # w = 0 samples the conditional distribution: its mean matches the class-0 component's mean.
    x0 = _sample(gm, schedule, ClassifierFreeGuidance(0.0), y)
    assert torch.allclose(x0.mean(0), gm.means[0], atol=0.08)


@pytest.mark.parametrize("form,sampler", [("eps", "ddim"), ("mean", "ddpm")])
def test_classifier_guidance_steers_an_unconditional_model(gm, schedule, form, sampler):
    """Guiding the *unconditional* exact model with the exact classifier: the share of samples
    whose most likely class is the target rises with s (ADM Fig. 3 / Table 4 in miniature)."""
    n = 1500 if sampler == "ddim" else 600  # ddpm walks all 200 steps
    y = torch.zeros(n, dtype=torch.long)
    grad_fn = lambda x, t, y: gm.class_log_prob_grad(x, y, *_ab(schedule, t))  # noqa: E731
    rates = []
    for s in (0.0, 1.0, 4.0):
        g = ClassifierGuidance(scale=s, form=form, grad_fn=grad_fn)
        x0 = _sample(gm, schedule, g, y, sampler, n=n)
        rates.append(float((gm.class_log_prob(x0, 0) > gm.class_log_prob(x0, 1)).float().mean()))
    assert rates[0] < rates[1] < rates[2]
    assert abs(rates[0] - 0.45) < 0.1  # s = 0: the unconditional model (class 0 holds 40% of the mass)
    assert rates[2] > 0.95


def test_no_guidance_passes_labels_and_needs_none():
    seen = []
    fn = NoGuidance()(lambda x, t, y: seen.append(y) or x, None, None)
    fn(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    assert seen == [None]


def test_guidance_errors_name_what_is_missing(gm, schedule):
    with pytest.raises(ConfigError, match="condition dropped"):
        ClassifierFreeGuidance(1.0)(exact_model_fn(gm, schedule), schedule, torch.zeros(2, dtype=torch.long), None)
    with pytest.raises(ValueError, match="needs class labels"):
        ClassifierFreeGuidance(1.0)(exact_model_fn(gm, schedule), schedule, None, NULL)(_points(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="guidance.form"):
        ClassifierGuidance(scale=1.0, form="score", grad_fn=lambda *a: None)
    with pytest.raises(ValueError, match="exactly one"):
        ClassifierGuidance(scale=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        ClassifierFreeGuidance(-1.0)


def test_labels_cycle_per_global_index_and_the_class_grid_has_one_row_per_class():
    assert labels_for_indices(range(8, 12), None, 10).tolist() == [8, 9, 0, 1]
    assert labels_for_indices(range(3), 7, 10).tolist() == [7, 7, 7]
    assert labels_for_indices(range(3), [1, 4], 10).tolist() == [1, 4, 1]
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        labels_for_indices(range(2), 12, 10)
    x = torch.arange(7, dtype=torch.float32)[:, None, None, None].expand(7, 1, 2, 2)
    y = labels_for_indices(range(7), None, 3)
    cells, per_row = class_grid(x, y, 3)
    assert per_row == 3 and cells.shape[0] == 9
    assert cells[:, 0, 0, 0].tolist() == [0, 3, 6, 1, 4, 1, 2, 5, 1]  # rows = classes, blanks = 1


def _tiny_module(**kw):
    from functools import partial

    from diffzoo.lit import DiffusionModule
    from diffzoo.networks import UNet
    from diffzoo.objectives.simple import SimpleLoss

    net = UNet(1, 1, 8, 16, (1, 2), 1, (), 0.0, num_groups=8, num_classes=3)
    kw.setdefault("conditional", True)
    return DiffusionModule(net, DiscreteSchedule(linear_betas(50)), SimpleLoss(), partial(ddpm), partial(torch.optim.Adam), **kw)


def test_condition_dropout_rate_is_seeded_per_step():
    y = torch.randint(0, 3, (20000,), generator=torch.Generator().manual_seed(0))
    module = _tiny_module(cond_drop_prob=0.3)
    a, b = module._cond({"y": y})["y"], module._cond({"y": y})["y"]
    dropped = a == module.net.null_class
    assert abs(float(dropped.float().mean()) - 0.3) < 0.015  # CFG Algorithm 1: p_uncond
    assert torch.equal(a[~dropped], y[~dropped]) and torch.equal(a, b)  # same (seed, rank, step): same draw
    other = _tiny_module(cond_drop_prob=0.3, seed=1)._cond({"y": y})["y"]
    assert not torch.equal(other, a)
    assert torch.equal(_tiny_module()._cond({"y": y})["y"], y)  # p = 0: labels untouched


def test_a_scalar_bound_label_serves_any_batch_size():
    """``bind(y=c)`` with one label (an int or a 0-d tensor) is ``bind(y=full([B], c))`` for every batch
    size B — the network itself needs one label per sample."""
    module = _tiny_module(cond_drop_prob=0.1)
    base, null = module.denoiser(), module.net.null_class
    for n in (1, 5):
        x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(n))
        expected = base.bind(y=torch.full((n,), null, dtype=torch.long)).predict(x, 20).eps
        for label in (null, torch.tensor(null)):
            assert torch.equal(base.bind(y=label).predict(x, 20).eps, expected)


def test_condition_dropout_errors_name_the_keys():
    with pytest.raises(ValueError, match="cond_drop_prob"):
        _tiny_module(cond_drop_prob=1.0)
    with pytest.raises(ValueError, match="model.conditional=true"):
        _tiny_module(cond_drop_prob=0.1, conditional=False)


def test_module_sample_with_cfg_makes_one_forward_of_twice_the_batch_per_step():
    module = _tiny_module(cond_drop_prob=0.1)
    sizes = []
    module.ema.shadow.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    x = module.sample(x_T=x_T, y=y, guidance=ClassifierFreeGuidance(2.0), steps=5)
    assert x.shape == (4, 1, 8, 8) and sizes == [8] * 5
    sizes.clear()
    plain = module.sample(x_T=x_T, y=y, steps=5, generator=torch.Generator().manual_seed(5))
    zero = module.sample(x_T=x_T, y=y, guidance=ClassifierFreeGuidance(0.0), steps=5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(plain, zero)  # w = 0 is the conditional model


# ---------------------------------------------------------------- guidance and x̂₀ clipping (review A1)
def _imperfect_eps(gm, schedule):
    """An ε model 5 % off the exact one plus a bias: x̂₀ = (x − σε)/α saturates early in the chain."""
    exact = exact_model_fn(gm, schedule)
    return lambda x, t, y: 1.05 * exact(x, t, None) + 0.05


def _adm_reference(eps_fn, grad_fn, schedule, x_T, scale, form, seed, shift_then_clip=False):
    """The ancestral loop of guided-diffusion (``p_sample`` with ``clip_denoised=True``, fixed-large Σ),
    written out here: ``p_mean_variance`` clips x̂₀ first; ``condition_score`` rebuilds ε from the
    clipped x̂₀, subtracts √(1 − ᾱ_t)·s·g and forms the mean from the new (unclipped) x̂₀;
    ``condition_mean`` adds Σ·s·g to the mean of the clipped x̂₀. ``shift_then_clip`` is the order
    diffzoo had before (shift ε, then clip): the test checks the two differ."""
    sc = schedule
    var_large = torch.cat([sc.posterior_variance[1:2], sc.betas[1:]])
    gen, x = torch.Generator().manual_seed(seed), x_T
    for t in reversed(range(sc.T)):
        tt = torch.full((x.shape[0],), t)
        eps = eps_fn(x, tt, None)
        g = scale * grad_fn(x, tt)
        if shift_then_clip:
            eps = eps - sc.sqrt_one_minus_alphas_cumprod[t] * g
        x0 = (sc.sqrt_recip_alphas_cumprod[t] * x - sc.sqrt_recipm1_alphas_cumprod[t] * eps).clamp(-1, 1)
        if form == "eps" and not shift_then_clip:
            eps = (sc.sqrt_recip_alphas_cumprod[t] * x - x0) / sc.sqrt_recipm1_alphas_cumprod[t]
            eps = eps - sc.sqrt_one_minus_alphas_cumprod[t] * g
            x0 = sc.sqrt_recip_alphas_cumprod[t] * x - sc.sqrt_recipm1_alphas_cumprod[t] * eps
        mean = sc.posterior_mean_coef1[t] * x0 + sc.posterior_mean_coef2[t] * x
        if form == "mean" and not shift_then_clip:
            mean = mean + var_large[t] * g
        x = mean + var_large[t].sqrt() * torch.randn(x.shape, generator=gen, dtype=x.dtype) if t > 0 else mean
    return x


@pytest.mark.parametrize("form", ["eps", "mean"])
def test_guidance_is_applied_after_clipping_as_guided_diffusion(gm, form):
    """Review A1: with ``clip_x0`` (the default of ``sampler=ddpm``) and an imperfect ε model, the guided
    ancestral chain equals guided-diffusion's loop in its order — clip x̂₀, then shift — for both forms;
    the old order (shift ε, then clip) differs, so the test can tell them apart."""
    schedule = DiscreteSchedule(linear_betas(100, 1e-3, 0.15))
    eps_fn = _imperfect_eps(gm, schedule)
    grad_fn = lambda x, t, y=None: gm.class_log_prob_grad(x, torch.zeros(x.shape[0], dtype=torch.long),  # noqa: E731
                                                          schedule.alpha(t.round().long()), schedule.sigma(t.round().long()))
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    guided = ClassifierGuidance(scale=3.0, form=form, grad_fn=grad_fn)(eps_fn, schedule, torch.zeros(256, dtype=torch.long))
    ours = ddpm(guided, schedule, x_T, variance="fixedlarge", clip_x0=True, generator=torch.Generator().manual_seed(11))
    ref = _adm_reference(eps_fn, grad_fn, schedule, x_T, 3.0, form, seed=11)
    assert torch.allclose(ours, ref, atol=1e-9, rtol=0)
    old_order = _adm_reference(eps_fn, grad_fn, schedule, x_T, 3.0, form, seed=11, shift_then_clip=True)
    assert (old_order - ref).abs().max() > 0.1


def test_ddim_with_clipping_shifts_the_clipped_eps(gm):
    """improved-diffusion's ``ddim_sample`` with ``cond_fn``: ε from the clipped x̂₀, then the ε-shift,
    then DDIM eq. 12 with the shifted ε and the x̂₀ it implies."""
    schedule = DiscreteSchedule(linear_betas(100, 1e-3, 0.15))
    eps_fn, sc = _imperfect_eps(gm, schedule), schedule
    grad_fn = lambda x, t, y=None: gm.class_log_prob_grad(x, torch.zeros(x.shape[0], dtype=torch.long),  # noqa: E731
                                                          schedule.alpha(t.round().long()), schedule.sigma(t.round().long()))
    x = x_T = torch.randn(128, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    seq = list(range(0, 100, 10))
    for k in reversed(range(len(seq))):
        t, s = seq[k], (seq[k - 1] if k > 0 else None)
        tt = torch.full((x.shape[0],), t)
        x0 = (sc.sqrt_recip_alphas_cumprod[t] * x - sc.sqrt_recipm1_alphas_cumprod[t] * eps_fn(x, tt, None)).clamp(-1, 1)
        eps = (sc.sqrt_recip_alphas_cumprod[t] * x - x0) / sc.sqrt_recipm1_alphas_cumprod[t] - sc.sqrt_one_minus_alphas_cumprod[t] * 2.0 * grad_fn(x, tt)
        x0 = sc.sqrt_recip_alphas_cumprod[t] * x - sc.sqrt_recipm1_alphas_cumprod[t] * eps
        a_s = sc.alphas_cumprod[s] if s is not None else torch.tensor(1.0, dtype=torch.float64)
        x = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps
    guided = ClassifierGuidance(scale=2.0, grad_fn=grad_fn)(eps_fn, schedule, torch.zeros(128, dtype=torch.long))
    ours = ddim(guided, schedule, x_T, 10, clip_x0=True)
    assert torch.allclose(ours, x, atol=1e-9, rtol=0)


def test_cfg_is_clipped_after_guidance_and_classifier_guidance_before(gm, schedule):
    """GLIDE combines the two ε in its model function, before ``p_mean_variance`` clips: an x̂₀ transform
    lands on top of CFG (the guided x̂₀ is clipped) but below classifier guidance (its shift is kept)."""
    from diffzoo.denoisers import ClipX0

    base = mixture_denoiser(gm, schedule)
    x, y = 3 * _points(32), torch.zeros(32, dtype=torch.long)
    cfg = ClassifierFreeGuidance(4.0).wrap(base).with_x0_transform(ClipX0()).bind(y=y)
    assert cfg.predict(x, 150).x0.abs().max() <= 1
    grad_fn = lambda x, tau, y: 50 * torch.ones_like(x)  # noqa: E731 - a huge shift
    cg = ClassifierGuidance(scale=1.0, grad_fn=grad_fn).wrap(base).with_x0_transform(ClipX0()).bind(y=y)
    assert cg.predict(x, 150).x0.abs().max() > 1


def test_mean_form_is_refused_by_every_sampler_but_ancestral(gm, schedule):
    base = mixture_denoiser(gm, schedule)
    guided = ClassifierGuidance(form="mean", grad_fn=lambda x, tau, y: torch.zeros_like(x)).wrap(base).bind(y=torch.zeros(4, dtype=torch.long))
    x_T = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="form=mean"):
        ddim(guided, x_T, 5)
    for name in ("ddim", "pc", "ode"):
        with pytest.raises(ConfigError, match="needs sampler=ddpm"):
            SamplerSpec(name)(guided, x_T)
    assert SamplerSpec("ddpm", 5)(guided, x_T).shape == x_T.shape


def test_cfg_is_refused_for_a_model_trained_without_label_dropout():
    """Review A6: a conditional U-Net has a null-class embedding whether or not it was trained; only a
    model trained with ``cond_drop_prob > 0`` exposes it as its unconditional input."""
    untrained_null = _tiny_module(cond_drop_prob=0.0)
    with pytest.raises(ConfigError, match="cond_drop_prob > 0"):
        ClassifierFreeGuidance(2.0).wrap(untrained_null.denoiser())
    trained = _tiny_module(cond_drop_prob=0.1)
    assert trained.denoiser().null_cond == {"y": trained.net.null_class}
    ClassifierFreeGuidance(2.0).wrap(trained.denoiser())
