"""Text conditioning in the U-Net and the text-conditional module (issue 14, "Conditioning in the U-Nets").

GLIDE (Nichol et al. 2021): the text context joined to every attention block's keys / values and the
pooled vector added to the time embedding; Imagen (Saharia et al. 2022 §2.4): cross-attention on
LayerNorm-ed text states. Closed forms checked: masked keys get softmax weight exactly 0; a zero
output projection makes a residual block the identity; CFG eq. 6 (Ho & Salimans 2022)
``ε̃ = (1 + w) ε(x, c) − w ε(x, ∅)``, so ``w = 0`` is the conditional model.
"""

from __future__ import annotations

import functools

import pytest
import torch

from diffzoo.data.captions import WordTokenizer
from diffzoo.errors import ConfigError
from diffzoo.guidance import ClassifierFreeGuidance
from diffzoo.lit import TextDiffusionModule
from diffzoo.networks import UNet
from tests.helpers import randomize_parameters as _randomize
from diffzoo.networks.text import FrozenTextEncoder, GlideTextTransformer
from diffzoo.networks.text_attention import CrossAttentionBlock
from diffzoo.objectives import SimpleLoss
from diffzoo.samplers import ddpm
from diffzoo.schedules import DiscreteSchedule, linear_betas

D_TEXT, L = 16, 8
NET = dict(in_channels=1, out_channels=1, image_size=8, base_channels=16, channel_mult=[1, 2, 2], num_res_blocks=1,
           attention_resolutions=[4], num_groups=4, dropout=0.0, num_heads=2)
TEXT = {"glide": dict(text_dim=D_TEXT, text_conditioning="glide"),
        # cross-attention only at 8×8 (level 0 has no self-attention or resampler): the other keys keep their names
        "cross_attention": dict(text_dim=D_TEXT, text_conditioning="cross_attention", cross_attention_resolutions=[8])}


def _inputs(B: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x, t = torch.randn(B, 1, 8, 8, generator=gen), torch.rand(B, generator=gen) * 100
    context, pooled = torch.randn(B, L, D_TEXT, generator=gen), torch.randn(B, D_TEXT, generator=gen)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:], mask[1, 5:] = False, False
    return x, t, context, mask, pooled


# ---------------------------------------------------------------------- the network
@pytest.mark.parametrize("mode", list(TEXT))
def test_without_context_the_text_net_is_the_plain_net(mode):
    base = _randomize(UNet(**NET))
    text_net = UNet(**NET, **TEXT[mode]).eval()
    result = text_net.load_state_dict(base.state_dict(), strict=False)  # the plain checkpoint loads
    assert not result.unexpected_keys
    for key in result.missing_keys:  # and only the text layers are new
        parts = key.split(".")
        owners = [text_net.get_submodule(".".join(parts[:i])) for i in range(1, len(parts))]
        assert key.startswith("text_pool_proj.") or ".encoder_kv." in key or any(
            isinstance(o, CrossAttentionBlock) for o in owners), key
    x, t, *_ = _inputs()
    with torch.no_grad():
        assert torch.equal(text_net(x, t), base(x, t))
    assert set(UNet(**NET).state_dict()) == set(base.state_dict())  # text_dim=None adds nothing


@pytest.mark.parametrize("mode", list(TEXT))
def test_shapes_and_masked_positions_have_no_effect(mode):
    net = _randomize(UNet(**NET, **TEXT[mode]))
    x, t, context, mask, pooled = _inputs()
    with torch.no_grad():
        out = net(x, t, context=context, context_mask=mask, pooled=pooled)
        assert out.shape == x.shape
        changed = context.clone()
        changed[~mask] = 1e3 * torch.randn(int((~mask).sum()), D_TEXT)
        # softmax weight of a masked key is exactly 0: the output may differ only by float reassociation
        torch.testing.assert_close(net(x, t, context=changed, context_mask=mask, pooled=pooled), out,
                                   rtol=0, atol=1e-5)
        visible = context.clone()
        visible[2, 0] += torch.linspace(-1, 1, D_TEXT)  # an attended position changes the output (not a constant shift: LayerNorm removes those)
        assert (net(x, t, context=visible, context_mask=mask, pooled=pooled) - out)[2].abs().max() > 1e-4
        assert (net(x, t, context=context, context_mask=mask, pooled=pooled + 1) - out).abs().max() > 1e-4


def test_fully_masked_glide_context_without_pooled_is_the_plain_net():
    # every context key masked: softmax over the block's own keys alone = AttentionBlock exactly
    net = _randomize(UNet(**NET, **TEXT["glide"]))
    x, t, context, _, _ = _inputs()
    none = torch.zeros(x.shape[0], L, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, context=context, context_mask=none), net(x, t), rtol=0, atol=1e-5)


def test_fresh_cross_attention_with_zero_pooled_projection_is_the_plain_net():
    # Imagen blocks start with a zero output projection; with text_pool_proj zeroed too the net ignores the text
    net = UNet(**NET, **TEXT["cross_attention"]).eval()
    torch.nn.init.zeros_(net.text_pool_proj.weight), torch.nn.init.zeros_(net.text_pool_proj.bias)
    with torch.no_grad():
        for m in net.modules():  # make the plain path non-trivial, but keep the cross-attention outputs at 0
            if isinstance(m, torch.nn.Conv2d) and not m.weight.abs().sum():
                m.weight.normal_(0, 0.1)
    x, t, context, mask, pooled = _inputs()
    with torch.no_grad():
        assert net(x, t).abs().max() > 0
        assert torch.equal(net(x, t, context=context, context_mask=mask, pooled=pooled), net(x, t))


def test_text_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="net.text_conditioning"):
        UNet(**NET, text_dim=D_TEXT, text_conditioning="concat")
    with pytest.raises(ConfigError, match="net.cross_attention_resolutions"):
        UNet(**NET, text_dim=D_TEXT, text_conditioning="cross_attention", cross_attention_resolutions=[3])
    with pytest.raises(ValueError, match="text_dim=None"):
        UNet(**NET)(torch.zeros(1, 1, 8, 8), torch.zeros(1), pooled=torch.zeros(1, D_TEXT))


# ---------------------------------------------------------------------- the module
WORDS = ["a", "bold", "thin", "digit", "seven", "one"]


class TinyFrozen(FrozenTextEncoder):
    """A frozen encoder: a fixed random embedding, word ids from :class:`WordTokenizer`."""

    def __init__(self):
        super().__init__(cache_size=64)
        self.tok = WordTokenizer(WORDS, L)
        self.dim, self.context_length, self.pad_id = D_TEXT, L, WordTokenizer.PAD
        self.embed = torch.nn.Embedding(self.tok.vocab_size, D_TEXT)
        self.freeze()

    def tokenize(self, captions):
        return self.tok.encode(list(captions))

    def _encode(self, tokens, mask):
        states = self.embed(tokens)
        return states, states.mean(1)


def _module(encoder, mode: str = "glide", drop: float = 0.2, seed: int = 0):
    torch.manual_seed(seed)
    return TextDiffusionModule(
        net=_randomize(UNet(**NET, **TEXT[mode]), seed), schedule=DiscreteSchedule(linear_betas(50)),
        objective=SimpleLoss(), sampler=functools.partial(ddpm), optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        ema_decay=0.9, text_encoder=encoder, caption_drop_prob=drop, seed=seed,
        tokenizer=WordTokenizer(WORDS, L) if encoder.trainable else None,
    )


def _glide():
    return GlideTextTransformer(vocab_size=len(WORDS) + 4, context_length=L, width=D_TEXT, layers=1, heads=2)


def _batch(B: int = 4):
    text = ["a bold digit seven", "a thin digit one", "a digit seven", "a bold digit one"][:B]
    tok = WordTokenizer(WORDS, L)
    return {"x": torch.randn(B, 1, 8, 8), "text": text, "tokens": tok.encode(text)}


def _optimizer(m):
    out = m.configure_optimizers()
    return out["optimizer"] if isinstance(out, dict) else out


def test_frozen_encoder_is_not_trained_nor_averaged():
    m = _module(TinyFrozen(), mode="cross_attention")
    enc_ids = {id(p) for p in m.text_encoder.parameters()}
    in_opt = {id(p) for g in _optimizer(m).param_groups for p in g["params"]}
    assert enc_ids and not enc_ids & in_opt and {id(p) for p in m.net.parameters()} <= in_opt
    assert m.text_ema is None and not any(id(p) in enc_ids for p in m.ema.parameters())
    m.training_step(_batch(), 0).backward()
    assert all(p.grad is None and not p.requires_grad for p in m.text_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.net.parameters())


def test_trainable_encoder_is_trained_and_averaged():
    m = _module(_glide())
    in_opt = {id(p) for g in _optimizer(m).param_groups for p in g["params"]}
    assert {id(p) for p in m.text_encoder.parameters()} <= in_opt
    assert m.text_ema is not None
    m.training_step(_batch(), 0).backward()
    assert m.text_encoder.token_embedding.weight.grad.abs().sum() > 0


def test_caption_dropout_rate_on_a_seeded_step():
    m = _module(_glide(), drop=0.2)
    n = 20000
    drop = m._drop_mask(n)
    # Binomial(n, 0.2): 5 standard deviations of the rate
    assert abs(drop.float().mean().item() - 0.2) < 5 * (0.2 * 0.8 / n) ** 0.5
    assert torch.equal(drop, m._drop_mask(n))  # the same step draws the same captions
    m._micro_batch = 1  # another micro-batch of the step draws others
    assert not torch.equal(drop, m._drop_mask(n))


def test_dropped_captions_are_encoded_as_the_empty_caption():
    m = _module(_glide(), drop=0.5)
    batch = _batch()
    drop = m._drop_mask(4)
    got = m._encode_batch(batch)
    expect_text = ["" if d else c for c, d in zip(batch["text"], drop.tolist())]
    want = m.text_encoder(expect_text)
    assert 0 < int(drop.sum()) < 4  # both kinds present for this seed
    torch.testing.assert_close(got["context"], want.states)
    assert got["context_mask"] is None  # GLIDE attends to all L positions


@pytest.mark.parametrize("make,mode", [(_glide, "glide"), (TinyFrozen, "cross_attention")])
def test_denoiser_with_text_and_cfg(make, mode):
    m = _module(make(), mode=mode)
    den = m.denoiser(use_ema=False)
    assert den.null_cond == {"text": ""}
    text = ["a bold digit seven", "a thin digit one", "a digit seven"]
    x, t, *_ = _inputs()
    with torch.no_grad():
        cond = den.predict(x, t, text=text).eps
        assert cond.shape == x.shape
        one = den.bind(text="a bold digit seven").predict(x, t).eps  # a single caption bound per sample
        torch.testing.assert_close(one, den.predict(x, t, text=[text[0]] * 3).eps)
        uncond = den.predict(x, t, text=[""] * 3).eps
        assert (cond - uncond).abs().max() > 1e-4
        torch.testing.assert_close(den.predict(x, t).eps, uncond)  # no caption = the empty caption
        # CFG eq. 6 with the project's weight w: (1 + w)·ε_c − w·ε_∅; w = 0 is the conditional model
        torch.testing.assert_close(ClassifierFreeGuidance(0.0).wrap(den).predict(x, t, text=text).eps, cond)
        guided = ClassifierFreeGuidance(2.0).wrap(den).predict(x, t, text=text).eps  # one batched [c; ∅] pass
        torch.testing.assert_close(guided, 3 * cond - 2 * uncond, rtol=0, atol=1e-4)
        bound = ClassifierFreeGuidance(2.0).wrap(den).bind(text="a thin digit one").predict(x, t).eps
        torch.testing.assert_close(bound, 3 * den.predict(x, t, text=[text[1]] * 3).eps - 2 * uncond, rtol=0, atol=1e-4)


def test_text_digits_checkpoint_rebuilds_encoder_and_tokenizer(tmp_path):
    # the experiment's model, saved and rebuilt from its stored config alone, predicts the same for a caption
    from diffzoo.config import compose_config, register_resolvers
    from diffzoo.lit import build_module, load_module

    register_resolvers()
    m = build_module(compose_config("train", ["experiment=text_digits"]), (1, 8, 8))
    _randomize(m.ema.shadow, seed=3)
    path = tmp_path / "text.ckpt"
    torch.save({"state_dict": m.state_dict(), "diffzoo": {"config": m.run_config, "data_shape": [1, 8, 8]}}, path)
    loaded = load_module(path)
    x, t, *_ = _inputs(2)
    with torch.no_grad():
        want = m.denoiser().predict(x, t, text="a bold digit seven").eps
        assert torch.equal(loaded.denoiser().predict(x, t, text="a bold digit seven").eps, want)
        assert (loaded.denoiser().predict(x, t, text="a thin digit one").eps - want).abs().max() > 1e-4


def test_pooled_only_conditioning_ignores_the_token_states():
    # Imagen's pooling baseline (App. D.3.1): the pooled vector moves the output, the token states do not
    net = _randomize(UNet(**NET, text_dim=D_TEXT, text_conditioning="pooled"))
    x, t, context, mask, pooled = _inputs()
    with torch.no_grad():
        out = net(x, t, context=context, context_mask=mask, pooled=pooled)
        torch.testing.assert_close(net(x, t, context=torch.randn_like(context), pooled=pooled), out, rtol=0, atol=0)
        assert (net(x, t, context=context, pooled=pooled + 1) - out).abs().max() > 1e-3
    plain = {k for k in UNet(**NET).state_dict()}
    assert set(net.state_dict()) - plain == {"text_pool_proj.weight", "text_pool_proj.bias"}
