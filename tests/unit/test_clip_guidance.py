"""GLIDE's noised CLIP and CLIP guidance: the untrained time path is the plain CNN tower, the guidance
gradient is the derivative of the scaled similarity (finite differences), and the guided prediction
moves ε (or the mean) exactly as classifier guidance does with that gradient."""

from __future__ import annotations

import functools

import pytest
import torch

from diffzoo.data.captions import WordTokenizer
from diffzoo.denoisers import Denoiser, mixture_denoiser
from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.guidance.clip import CLIPGuidance, clip_similarity_grad
from diffzoo.lit.noised_clip import NoisedCLIPModule
from diffzoo.networks.clip import ConvImageTower
from diffzoo.networks.noised_clip import NoisedCLIP, NoisedConvImageTower
from diffzoo.networks.text import GlideTextTransformer
from diffzoo.schedules import DiscreteSchedule, cosine_betas

WORDS = ["a", "bold", "thin", "digit", "seven", "one"]


def _clip(seed: int = 0) -> NoisedCLIP:
    torch.manual_seed(seed)
    text = GlideTextTransformer(vocab_size=len(WORDS) + 4, context_length=8, width=16, layers=1, heads=2)
    text.set_tokenizer(WordTokenizer(WORDS, 8))
    return NoisedCLIP(NoisedConvImageTower(1, 8, [8, 16], 12, time_channels=16), text, embed_dim=12).double()


def test_untrained_time_path_is_the_plain_tower():
    noised = NoisedConvImageTower(1, 8, [8, 16], 12, time_channels=16)
    plain = ConvImageTower(1, 8, [8, 16], 12)
    with torch.no_grad():  # the same convolution / norm / projection weights
        for i, (conv, norm) in enumerate(zip(noised.convs, noised.norms)):
            plain.features[3 * i].load_state_dict(conv.state_dict())
            plain.features[3 * i + 1].load_state_dict(norm.state_dict())
        plain.proj.load_state_dict(noised.proj.state_dict())
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(noised(x, torch.tensor([0.0, 10.0, 999.0])), plain(x))


def test_similarity_gradient_matches_finite_differences():
    clip = _clip().eval()
    x, t = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.tensor([5.0, 700.0])
    text = ["a bold digit seven", "a thin digit one"]
    grad = clip_similarity_grad(clip, x, t, text)

    def score(v):
        z_t = clip.encode_text(text).embedding
        return float(clip.logit_scale * (clip.encode_image(v, t) * z_t).sum())

    direction = torch.randn_like(x)
    h = 1e-5
    fd = (score(x + h * direction) - score(x - h * direction)) / (2 * h)
    assert abs(fd - float((grad * direction).sum())) < 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("form", ["eps", "mean"])
def test_guided_prediction_is_classifier_guidance_with_the_clip_gradient(form):
    clip = _clip(1).eval()
    schedule = DiscreteSchedule(cosine_betas(100))
    gm = GaussianMixture([0.5, 0.5], torch.zeros(2, 64).tolist(), 1.0)
    base = mixture_denoiser(gm, schedule, conditional=False)
    guidance = CLIPGuidance(clip, scale=2.0, form=form)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    text = ["a bold digit seven", "a thin digit one"]

    flat = Denoiser(  # a [B, 1, 8, 8] view of the 64-d mixture denoiser
        lambda v, tau: base.predict(v.flatten(1), tau).eps.view_as(v), schedule, "eps")
    guided = guidance.wrap(flat)
    t = 40
    p, q = flat.predict(x, t), guided.predict(x, t, text=text)
    tau = torch.full((2,), float(flat.model_time(t)), dtype=torch.float64)
    g = clip_similarity_grad(clip, x, tau, text)
    if form == "eps":
        _, sig = flat.process._coefficients(t, x)
        torch.testing.assert_close(q.eps, p.eps - sig * 2.0 * g)
    else:
        torch.testing.assert_close(q.mean_shift, 2.0 * g)
        torch.testing.assert_close(q.eps, p.eps)
    with pytest.raises(ValueError, match="captions"):
        guided.predict(x, t)


def test_noised_clip_module_trains_on_noised_images():
    clip = _clip(2).float()
    schedule = DiscreteSchedule(cosine_betas(100))
    m = NoisedCLIPModule(clip, schedule, functools.partial(torch.optim.Adam, lr=1e-3), data_shape=(1, 8, 8))
    tok = WordTokenizer(WORDS, 8)
    text = ["a bold digit seven", "a thin digit one"] * 4
    batch = {"x": torch.rand(8, 1, 8, 8) * 2 - 1, "text": text, "tokens": tok.encode(text)}
    m.train()
    seen = {}
    original = clip.encode_image

    def spy(x, t=None):
        seen["x"], seen["t"] = x, t
        return original(x, t)

    clip.encode_image = spy
    loss = m.batch_loss(batch)
    assert torch.isfinite(loss) and seen["t"] is not None and not torch.equal(seen["x"], batch["x"])
    loss.backward()
    assert clip.image_tower.films[0].weight.grad.abs().sum() > 0  # the time path learns


def test_clip_score_is_100_times_the_mean_cosine():
    from diffzoo.metrics.clip_score import clip_score

    class Axes:  # image i ↦ e_0 rotated by angle x_i; every caption ↦ e_0
        def encode_image(self, x):
            a = x.flatten(1)[:, 0].double()
            return torch.stack([a.cos(), a.sin()], 1)

        def encode_text(self, captions):
            from types import SimpleNamespace

            return SimpleNamespace(embedding=torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(len(captions), 2))

    angles = torch.tensor([0.0, torch.pi / 3, torch.pi / 2, torch.pi])
    x = angles[:, None, None, None].expand(4, 1, 2, 2)
    out = clip_score(Axes(), x, ["c"] * 4, batch_size=3)
    assert out["clip_score"] == pytest.approx(100 * (1 + 0.5 + 0 - 1) / 4)
    with pytest.raises(ValueError, match="captions"):
        clip_score(Axes(), x, ["c"])
