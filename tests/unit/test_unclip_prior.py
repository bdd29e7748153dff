"""unCLIP's diffusion prior (Ramesh et al. 2022 §2.2): token order, causal mask, best-of-k,
embedding scaling, parity with diffusers' PriorTransformer, paper / Karlo sizes, the module."""

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffzoo.errors import ConfigError
from diffzoo.lit.unclip_prior import UnCLIPPriorModule, best_of
from diffzoo.networks.embedding_scaling import CONVENTIONS, PAPER_SCALE, EmbeddingScaling
from diffzoo.networks.prior_transformer import PriorTransformer, causal_prior_mask, sinusoidal_embedding
from diffzoo.objectives import SimpleLoss
from diffzoo.samplers import SamplerSpec
from diffzoo.schedules import DiscreteSchedule, cosine_betas
from tests.unit.test_clip import tiny_clip

CONF = __import__("pathlib").Path(__file__).resolve().parents[2] / "src" / "diffzoo" / "conf"


def tiny_prior(e=6, d=5, L=3, **kw) -> PriorTransformer:
    torch.manual_seed(0)
    return PriorTransformer(embed_dim=e, text_dim=d, text_length=L, width=8, layers=2, heads=2, **kw)


def _inputs(B=2, e=6, d=5, L=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, e, generator=g), torch.tensor([3.0, 700.0])[:B], torch.randn(B, e, generator=g),
            torch.randn(B, L, d, generator=g))


def _states(net, x, t, z_t, s, mask=None):
    """The token states after the last block (before norm_out), every position."""
    h = net.tokens(x, t, z_t, s) + net.positional_embedding
    m = causal_prior_mask(mask, x.shape[0], net.text_length)
    for block in net.transformer_blocks:
        h = block(h, m)
    return h


def test_token_order_is_the_papers():
    """[encoded text, z_t, timestep, noised z_i, query] (§2.2)."""
    net = tiny_prior()
    x, t, z_t, s = _inputs()
    tok = net.tokens(x, t, z_t, s)
    assert tok.shape == (2, 3 + 4, 8)
    torch.testing.assert_close(tok[:, :3], net.encoder_hidden_states_proj(s))
    torch.testing.assert_close(tok[:, 3], net.embedding_proj(z_t))
    temb = net.time_embedding.linear_2(torch.nn.functional.silu(net.time_embedding.linear_1(sinusoidal_embedding(t, 8))))
    torch.testing.assert_close(tok[:, 4], temb)
    torch.testing.assert_close(tok[:, 5], net.proj_in(x))
    torch.testing.assert_close(tok[:, 6], net.prd_embedding[0, 0].expand(2, -1))


def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([0.0, 5.0])
    emb = sinusoidal_embedding(t, 6)
    freqs = [10000 ** (-k / 3) for k in range(3)]
    want = [[math.cos(5 * f) for f in freqs] + [math.sin(5 * f) for f in freqs]]
    torch.testing.assert_close(emb[1:], torch.tensor(want))
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))


def test_causal_mask():
    m = causal_prior_mask(torch.tensor([[True, True, False]]), 1, 3)[0, 0]
    assert m.shape == (7, 7)
    for q in range(7):
        for k in range(7):
            want = (k <= q and k != 2) or k == q  # causal, padded key 2 hidden (seen only by itself)
            assert bool(m[q, k]) == want, (q, k)


def test_causality_of_the_network():
    """A token's state depends on earlier tokens only: changing the noised z_i (position L + 2) leaves
    the text, z_t and timestep positions unchanged and changes the query's."""
    net = tiny_prior()
    x, t, z_t, s = _inputs()
    a = _states(net, x, t, z_t, s)
    b = _states(net, x + 1.0, t, z_t, s)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-3
    # changing the last text token changes everything after it, nothing before
    s2 = s.clone()
    s2[:, 2] += 1.0
    c = _states(net, x, t, z_t, s2)
    torch.testing.assert_close(a[:, :2], c[:, :2])
    assert (a[:, 6] - c[:, 6]).abs().max() > 1e-3


def test_padded_text_does_not_reach_the_output():
    net = tiny_prior()
    x, t, z_t, s = _inputs()
    mask = torch.tensor([[True, True, False], [True, False, False]])
    s2 = s.clone()
    s2[~mask] = 100.0
    torch.testing.assert_close(net(x, t, z_t, s, mask), net(x, t, z_t, s2, mask))


def test_best_of_keeps_the_larger_dot_product():
    z_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cands = torch.tensor([[[0.9, 0.1], [0.8, 0.2]],     # candidate 0 for captions 0, 1
                          [[0.2, 0.8], [0.1, 0.95]]])   # candidate 1
    kept, scores = best_of(cands, z_t)
    torch.testing.assert_close(scores, torch.tensor([[0.9, 0.2], [0.2, 0.95]]))
    torch.testing.assert_close(kept, torch.tensor([[0.9, 0.1], [0.1, 0.95]]))
    # k = 1: the only candidate
    torch.testing.assert_close(best_of(cands[:1], z_t)[0], cands[0])


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_embedding_scaling_round_trips(convention):
    z = torch.nn.functional.normalize(torch.randn(50, 16, generator=torch.Generator().manual_seed(0)), dim=-1) + 0.3
    s = EmbeddingScaling(convention, 16)
    s.fit(z)
    torch.testing.assert_close(s.decode(s.encode(z)), z)
    x = s.encode(z)
    if convention == "paper":
        torch.testing.assert_close(x, 17.2 * z)
        assert PAPER_SCALE == 17.2
    elif convention == "sqrt_dim":
        torch.testing.assert_close(x, 4.0 * z)
    else:  # standardised per dimension on the fitted data
        torch.testing.assert_close(x.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
        torch.testing.assert_close(x.std(0), torch.ones(16))


def test_embedding_scaling_errors():
    with pytest.raises(ConfigError, match="model.embedding_scaling"):
        EmbeddingScaling("unit", 4)
    with pytest.raises(RuntimeError, match="fit"):
        EmbeddingScaling("data_stats", 4).encode(torch.zeros(1, 4))


def test_parity_with_diffusers_prior_transformer():
    """Same weights, same inputs: diffusers' PriorTransformer (with an attention mask, the only case in
    which it is causal) and this one agree; text states of the embedding's width (diffusers' layout)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.PriorTransformer(num_attention_heads=2, attention_head_dim=4, num_layers=2, embedding_dim=6,
                                     num_embeddings=3, additional_embeddings=4).eval()
    with torch.no_grad():
        for p in (ref.positional_embedding, ref.prd_embedding):
            p.normal_()
    ours = PriorTransformer(embed_dim=6, text_dim=6, text_length=3, width=8, layers=2, heads=2).eval()
    state = {k: v for k, v in ref.state_dict().items() if k not in ("clip_mean", "clip_std")}
    ours.load_state_dict(state, strict=True)
    x, t, z_t, s = _inputs(e=6, d=6)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    with torch.no_grad():
        want = ref(x, t, z_t, encoder_hidden_states=s, attention_mask=mask).predicted_image_embedding
        got = ours(x, t, z_t, s, mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,count", [("prior_transformer_unclip", 1_225_559_040), ("prior_transformer_karlo", 1_022_028_544)])
def test_paper_and_karlo_sizes_on_the_meta_device(name, count):
    """App. C Table 3: width 2048 × 24 blocks ("1B"); Karlo: 2048 × 20 ("1B"), equal to diffusers'
    PriorTransformer defaults (the Karlo prior) less their clip_mean / clip_std."""
    cfg = OmegaConf.load(CONF / "net" / f"{name}.yaml")
    assert (cfg.width, cfg.heads) == (2048, 32) and cfg.layers == (24 if "unclip" in name else 20)
    with torch.device("meta"):
        net = instantiate(cfg)
    assert sum(p.numel() for p in net.parameters()) == count
    if "karlo" in name:
        diffusers = pytest.importorskip("diffusers")
        with torch.device("meta"):
            ref = diffusers.PriorTransformer()
        assert sum(p.numel() for p in ref.parameters()) - 2 * 768 == count


def _module(**kw) -> UnCLIPPriorModule:
    clip = tiny_clip(embed_dim=6)
    torch.manual_seed(0)
    net = PriorTransformer(embed_dim=6, text_dim=16, text_length=8, width=8, layers=1, heads=2)
    sched = DiscreteSchedule(cosine_betas(T=50))
    return UnCLIPPriorModule(net, sched, SimpleLoss(prediction="x0"), SamplerSpec("ddpm", steps=5, clip_x0=False),
                             optimizer=lambda params: torch.optim.Adam(params), ema_decay=None, clip=clip, **kw)


def test_module_trains_on_scaled_clip_embeddings_with_clip_frozen():
    m = _module()
    assert m.data_shape == (6,)
    assert all(not p.requires_grad for p in m.clip.parameters())
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.net.parameters()}
    m.train()
    assert not m.clip.training
    batch = {"x": torch.rand(4, 1, 8, 8) * 2 - 1, "text": ["a bold digit one", "a thin digit two", "", "a digit three"]}
    loss = m.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad


def test_text_drop_rate_and_sample_embeddings():
    m = _module(text_drop_prob=0.3)
    drops = [sum(c == "" for c in m._dropped(["a"] * 1000))]
    assert abs(drops[0] - 300) < 4 * math.sqrt(1000 * 0.3 * 0.7)  # binomial(1000, 0.3) within 4 sigma
    out = m.eval().sample_embeddings(["a bold digit one", "a digit two", "three"], num_candidates=2, seed=3)
    assert out.candidates.shape == (2, 3, 6) and out.z_i.shape == (3, 6) and out.nfe == 5
    kept, _ = best_of(out.candidates, out.z_t)
    torch.testing.assert_close(out.z_i, kept)
    # candidate c of caption b is sample index c·B + b: the same draws again with the same seed
    again = m.sample_embeddings(["a bold digit one", "a digit two", "three"], num_candidates=2, seed=3)
    torch.testing.assert_close(again.candidates, out.candidates)


def test_module_checks_the_clip_fits():
    clip = tiny_clip(embed_dim=6)
    net = PriorTransformer(embed_dim=6, text_dim=16, text_length=9, width=8, layers=1, heads=2)
    with pytest.raises(ConfigError, match="net.text_length"):
        UnCLIPPriorModule(net, DiscreteSchedule(cosine_betas(T=50)), SimpleLoss(prediction="x0"),
                          SamplerSpec("ddpm", steps=5), optimizer=None, ema_decay=None, clip=clip)
