"""unCLIP's decoder (Ramesh et al. 2022 §2.1): the CLIP embedding projected onto the time embedding and
into 4 context tokens, the learned null, drop rates, classifier-free guidance, variations."""

import math

import pytest
import torch

from diffzoo.errors import ConfigError
from diffzoo.guidance import ClassifierFreeGuidance
from diffzoo.lit.unclip_decoder import UnCLIPDecoderModule
from diffzoo.networks import UNet
from diffzoo.networks.unclip_decoder import DROPPED, UnCLIPDecoderNet
from diffzoo.objectives import SimpleLoss
from diffzoo.samplers import SamplerSpec
from diffzoo.schedules import DiscreteSchedule, linear_betas
from tests.unit.test_clip import tiny_clip


def tiny_unet(text_dim=16):
    torch.manual_seed(0)
    return UNet(in_channels=1, out_channels=1, image_size=8, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(4,), dropout=0.0, num_groups=4, text_dim=text_dim)


class Recorder(torch.nn.Module):
    """Stands in for the U-Net: records what the wrapper hands it."""

    text_dim, text_conditioning, in_channels, out_channels, image_size, embedding_dim = 4, "glide", 1, 1, 8, 12

    def forward(self, x, t, **kw):
        self.got = kw
        return x


def test_embedding_goes_to_the_time_embedding_and_four_context_tokens():
    torch.manual_seed(0)
    net = UnCLIPDecoderNet(Recorder(), clip_dim=6)
    z = torch.randn(2, 6)
    ctx, mask = torch.randn(2, 3, 4), torch.tensor([[True, True, False], [True, False, False]])
    net(torch.zeros(2, 1, 8, 8), torch.zeros(2), context=ctx, context_mask=mask, pooled=torch.zeros(2, 4), clip_emb=z)
    got = net.unet.got
    torch.testing.assert_close(got["added_emb"], net.clip_image_embeddings_project_to_time_embeddings(z))
    assert got["context"].shape == (2, 4 + 3, 4)
    proj = net.clip_extra_context_tokens_proj(z)  # token j, channel c = output c·4 + j
    for j in range(4):
        torch.testing.assert_close(got["context"][:, j], proj[:, j::4])
    torch.testing.assert_close(got["context"][:, 4:], ctx)
    assert got["context_mask"].tolist() == [[True] * 4 + [True, True, False], [True] * 4 + [True, False, False]]


def test_dropped_rows_use_the_learned_null():
    torch.manual_seed(0)
    net = UnCLIPDecoderNet(Recorder(), clip_dim=6)
    with torch.no_grad():
        net.learned_classifier_free_guidance_embeddings.normal_()
    null = net.learned_classifier_free_guidance_embeddings
    z = torch.randn(3, 6)
    z[1] = DROPPED
    mixed = net.embedding_or_null(z, 3, torch.float32, "cpu")
    torch.testing.assert_close(mixed[1], null.detach())
    torch.testing.assert_close(mixed[[0, 2]], z[[0, 2]])
    torch.testing.assert_close(net.embedding_or_null(None, 2, torch.float32, "cpu"), null.detach().expand(2, -1))


def test_parity_with_diffusers_text_proj_model():
    """diffusers' UnCLIPTextProjModel (Karlo's layout) with its CLIP-text parts switched off: the same
    time-embedding term and the same 4 tokens from the same weights, and the same learned null."""
    pytest.importorskip("diffusers")
    try:  # diffusers moved unCLIP under pipelines/deprecated
        from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
    except ImportError:
        from diffusers.pipelines.unclip.text_proj import UnCLIPTextProjModel

    torch.manual_seed(0)
    ref = UnCLIPTextProjModel(clip_extra_context_tokens=4, clip_embeddings_dim=6, time_embed_dim=12, cross_attention_dim=4)
    with torch.no_grad():
        ref.embedding_proj.weight.zero_()
        ref.embedding_proj.bias.zero_()
        ref.learned_classifier_free_guidance_embeddings.normal_()
    ours = UnCLIPDecoderNet(Recorder(), clip_dim=6)
    state = {k: v for k, v in ref.state_dict().items()
             if k.startswith(("clip_image_embeddings_project", "clip_extra_context_tokens_proj", "learned_classifier"))}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("unet") for k in missing)
    z = torch.randn(2, 6)
    with torch.no_grad():
        hidden, time_emb = ref(image_embeddings=z, prompt_embeds=torch.randn(4, 6), text_encoder_hidden_states=torch.randn(4, 3, 6),
                               do_classifier_free_guidance=True)  # rows 0-1: the learned null, rows 2-3: z
        null = ours.embedding_or_null(None, 2, torch.float32, "cpu")
        both = torch.cat([null, z])
        torch.testing.assert_close(time_emb, ours.clip_image_embeddings_project_to_time_embeddings(both))
        torch.testing.assert_close(hidden[:, :4], ours.clip_tokens(both))


def _module(**kw) -> UnCLIPDecoderModule:
    from diffzoo.networks.text import GlideTextTransformer
    from diffzoo.data.captions import WordTokenizer

    clip = tiny_clip(embed_dim=6)
    tok = WordTokenizer(["a", "bold", "thin", "digit", "one", "two"], 8)
    torch.manual_seed(0)
    text = GlideTextTransformer(vocab_size=32, context_length=8, width=16, layers=1, heads=2, tokenizer=tok)
    net = UnCLIPDecoderNet(tiny_unet(16), clip_dim=6)
    with torch.no_grad():  # the U-Net's zero-initialised layers (output, residual branches), made non-trivial
        for p in net.unet.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(std=0.1)
    return UnCLIPDecoderModule(net, DiscreteSchedule(linear_betas(T=50)), SimpleLoss(), SamplerSpec("ddim", steps=4),
                               optimizer=lambda params: torch.optim.Adam(params), ema_decay=None, text_encoder=text,
                               clip=clip, **kw)


def test_module_trains_with_clip_frozen_and_drop_rates():
    m = _module(caption_drop_prob=0.5, clip_drop_prob=0.1)
    assert all(not p.requires_grad for p in m.clip.parameters())
    ids = {id(p) for p in m.trainable_parameters()}
    assert not ids & {id(p) for p in m.clip.parameters()}
    m.train()
    assert not m.clip.training
    loss = m.training_step({"x": torch.rand(3, 1, 8, 8) * 2 - 1, "text": ["a bold digit one", "a thin two", "one"]}, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    n = 2000
    dropped = int(m._clip_drop_mask(n).sum())
    assert abs(dropped - 0.1 * n) < 4 * math.sqrt(n * 0.1 * 0.9)  # §2.1: 10 %, binomial within 4 sigma


def test_cfg_weight_zero_is_the_conditional_decoder_and_eq6_otherwise():
    m = _module(caption_drop_prob=0.5, clip_drop_prob=0.1).eval()
    with torch.no_grad():  # a non-trivial learned null
        m.net.learned_classifier_free_guidance_embeddings.normal_()
    d = m.denoiser(use_ema=False)
    x, z = torch.randn(2, 1, 8, 8), torch.randn(2, 6)
    caps = ["a bold digit one", "a thin digit two"]
    cond = d.predict(x, 10.0, text=caps, clip_emb=z).eps
    uncond = d.predict(x, 10.0, text=["", ""], clip_emb=torch.full_like(z, DROPPED)).eps
    torch.testing.assert_close(ClassifierFreeGuidance(0.0).wrap(d).predict(x, 10.0, text=caps, clip_emb=z).eps, cond)
    w = 1.5  # CFG eq. 6: (1 + w) ε(x, c) − w ε(x, ∅), ∅ = (empty caption, learned null embedding)
    got = ClassifierFreeGuidance(w).wrap(d).predict(x, 10.0, text=caps, clip_emb=z).eps
    torch.testing.assert_close(got, (1 + w) * cond - w * uncond, rtol=1e-4, atol=1e-5)
    assert (cond - uncond).abs().max() > 1e-4  # the null path really differs


def test_variations_decode_the_images_own_clip_embedding():
    """The prior-free path: a variation is the decoder conditioned on exactly CLIP_image(x); different
    indices give different noise, equal indices the same sample."""
    m = _module().eval()
    seen = []
    inner = m.net.forward
    m.net.forward = lambda *a, **kw: (seen.append(kw["clip_emb"]), inner(*a, **kw))[1]
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    z = m.image_embeddings(x)
    out = m.decode(z.expand(3, -1), None, indices=[0, 1, 0], seed=0)
    assert all(torch.equal(s, z.expand(3, -1)) for s in seen)
    torch.testing.assert_close(out.x[0], out.x[2])
    assert (out.x[0] - out.x[1]).abs().max() > 1e-3


def test_decoder_config_errors():
    with pytest.raises(ConfigError, match="net.unet"):
        UnCLIPDecoderNet(tiny_unet(None), clip_dim=6)
    with pytest.raises(ConfigError, match="model.clip_drop_prob"):
        _module(clip_drop_prob=1.0)
