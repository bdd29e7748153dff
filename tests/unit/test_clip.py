"""CLIP trained here (Radford et al. 2021) and the OpenCLIP loader behind the same interface."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffzoo.data.captions import WordTokenizer
from diffzoo.errors import ConfigError
from diffzoo.lit.clip import CLIPModule, clip_loss, same_caption_targets
from diffzoo.networks.clip import CLIP, ConvImageTower, class_embeddings
from diffzoo.networks.text import GlideTextTransformer

WORDS = ["a", "bold", "thin", "digit", "one", "two", "three"]


def tiny_clip(embed_dim=16) -> CLIP:
    tok = WordTokenizer(WORDS, 8)
    text = GlideTextTransformer(vocab_size=32, context_length=8, width=16, layers=1, heads=2, tokenizer=tok)
    return CLIP(ConvImageTower(1, 8, [8, 16], embed_dim), text, embed_dim)


def test_embeddings_are_unit_and_logits_are_scaled_cosines():
    torch.manual_seed(0)
    clip = tiny_clip()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    caps = ["a bold digit one", "a thin digit two", "a digit three"]
    z_i, z_t = clip.encode_image(x), clip.encode_text(caps)
    assert z_i.shape == (3, 16) and z_t.embedding.shape == (3, 16)
    assert z_t.states.shape == (3, 8, 16) and z_t.mask.shape == (3, 8)
    torch.testing.assert_close(z_i.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(z_t.embedding.norm(dim=-1), torch.ones(3))
    # CLIP §2.5: logit scale starts at 1 / 0.07
    assert math.isclose(float(clip.logit_scale), 1 / 0.07, rel_tol=1e-6)
    expected = (1 / 0.07) * F.cosine_similarity(z_i[:, None], z_t.embedding[None], dim=-1)
    torch.testing.assert_close(clip.logits(z_i, z_t.embedding), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # clipped at 100 (§2.5)
        clip.log_logit_scale.fill_(10.0)
    assert float(clip.logit_scale) == 100.0


def test_clip_loss_closed_forms():
    # all logits equal: each softmax is uniform, CE = log B in both directions
    B = 5
    assert math.isclose(float(clip_loss(torch.zeros(B, B))), math.log(B), rel_tol=1e-6)
    # a perfectly separated diagonal with margin m: CE = log(1 + (B-1) e^{-m})
    m = 3.0
    logits = m * torch.eye(B)
    assert math.isclose(float(clip_loss(logits)), math.log(1 + (B - 1) * math.exp(-m)), rel_tol=1e-6)
    # asymmetric logits: the loss is the mean of the row and the column cross-entropies
    g = torch.randn(B, B, generator=torch.Generator().manual_seed(0))
    rows = -torch.log_softmax(g, 1).diagonal().mean()
    cols = -torch.log_softmax(g, 0).diagonal().mean()
    assert math.isclose(float(clip_loss(g)), float((rows + cols) / 2), rel_tol=1e-6)


def test_same_caption_targets_spread_over_identical_captions():
    t = same_caption_targets(["a", "b", "a", "a"])
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    assert t[0].tolist() == pytest.approx([1 / 3, 0, 1 / 3, 1 / 3]) and t[1].tolist() == [0, 1, 0, 0]
    # with all captions distinct it is the identity: the paper's loss
    g = torch.randn(3, 3)
    assert math.isclose(float(clip_loss(g, same_caption_targets(["x", "y", "z"]))), float(clip_loss(g)), rel_tol=1e-6)


def test_class_embeddings_ensemble_and_zero_shot():
    e = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    c = class_embeddings(e, torch.tensor([0, 1, 0]), 2)
    # class 0: mean of (1, 0) and (1, 1)/√2, renormalised
    want = F.normalize(torch.tensor([1 + 1 / math.sqrt(2), 1 / math.sqrt(2)]), dim=0)
    torch.testing.assert_close(c[0], want)
    torch.testing.assert_close(c[1], torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="no prompt"):
        class_embeddings(e, torch.tensor([0, 0, 0]), 2)


def test_zero_shot_logits_are_cosines_to_class_means():
    torch.manual_seed(1)
    clip = tiny_clip().eval()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    prompts = ["a digit one", "a bold one", "a digit two", "a thin two"]
    labels = torch.tensor([0, 0, 1, 1])
    got = clip.zero_shot_logits(x, prompts, labels, 2)
    z_t = clip.encode_text(prompts).embedding
    want = clip.encode_image(x) @ class_embeddings(z_t, labels, 2).T
    torch.testing.assert_close(got, want)


def test_contrastive_training_separates_a_learnable_pairing():
    """Two captions, two image classes (bright / dark): a few steps of the loss make each image
    closer to its own caption than to the other (the loss falls below chance, log 2)."""
    torch.manual_seed(0)
    clip = tiny_clip()
    opt = torch.optim.Adam(clip.parameters(), lr=3e-3)
    tokens = clip.text_encoder.tokenize(["a bold digit one", "a thin digit two"])
    for _ in range(60):
        x = torch.cat([torch.full((1, 1, 8, 8), 0.8), torch.full((1, 1, 8, 8), -0.8)]) + 0.05 * torch.randn(2, 1, 8, 8)
        loss = clip_loss(clip(x, tokens))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.1 * math.log(2)


def test_frozen_text_encoder_is_lit_style():
    """LiT: a frozen text tower contributes no trainable parameter; only the projection learns."""

    class Frozen(GlideTextTransformer):
        trainable = False

    tok = WordTokenizer(WORDS, 8)
    text = Frozen(vocab_size=32, context_length=8, width=16, layers=1, heads=2, tokenizer=tok)
    for p in text.parameters():
        p.requires_grad_(False)
    clip = CLIP(ConvImageTower(1, 8, [8], 16), text, 16)
    module = CLIPModule(clip, optimizer=None)
    names = {n for n, p in clip.named_parameters() if p.requires_grad}
    assert "text_proj.weight" in names and not any(n.startswith("text_encoder.") for n in names)
    assert module.num_parameters() == sum(p.numel() for n, p in clip.named_parameters() if n in names)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.targets"):
        CLIPModule(tiny_clip(), optimizer=None, targets="offdiagonal")
    with pytest.raises(ConfigError, match="net.init_temperature"):
        CLIP(ConvImageTower(1, 8, [8], 16), tiny_clip().text_encoder, 16, init_temperature=5.0)
    with pytest.raises(ConfigError, match="widths"):
        ConvImageTower(1, 8, [], 16)


def _tiny_open_clip():
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIP as OCLIP

    torch.manual_seed(0)
    model = OCLIP(embed_dim=16, vision_cfg={"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
                  text_cfg={"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}).eval()
    return open_clip, model


def test_open_clip_model_matches_its_own_encoders():
    open_clip, model = _tiny_open_clip()
    from diffzoo.networks.clip import OpenCLIPModel

    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=12)
    wrapped = OpenCLIPModel(model, tokenizer)
    assert wrapped.embed_dim == 16 and wrapped.image_size == 16
    caps = ["a bold digit one", "two"]
    with torch.no_grad():
        text = wrapped.encode_text(caps)
        want = F.normalize(model.encode_text(tokenizer(caps)), dim=-1)
        torch.testing.assert_close(text.embedding, want)
        # the end-of-text state, projected, is the pooled embedding
        eot = tokenizer(caps).argmax(-1)
        pooled = text.states[torch.arange(2), eot] @ model.text_projection
        torch.testing.assert_close(F.normalize(pooled, dim=-1), want)
        assert text.mask.sum(1).tolist() == (eot + 1).tolist()
        x = torch.rand(2, 1, 16, 16) * 2 - 1  # grey images in [-1, 1] at the model's size
        pix = ((x.expand(-1, 3, -1, -1) + 1) / 2 - wrapped.mean) / wrapped.std
        torch.testing.assert_close(wrapped.encode_image(x), F.normalize(model.encode_image(pix), dim=-1))


def test_zero_shot_accuracy_metric_counts_agreement_per_attribute():
    """metrics.zero_shot_accuracy: an image's predicted class is the argmax of zero_shot_logits; a stub
    CLIP that reads the class from the image's first pixel (and says "bold" always) scores exactly the
    fraction of images it reads right."""
    from types import SimpleNamespace

    from diffzoo.data.captions import PromptSet
    from diffzoo.metrics.zero_shot import zero_shot_accuracy

    y = torch.tensor([0, 1, 2, 0, 1])
    bold = torch.tensor([1, 0, 1, 1, 1])
    x = torch.zeros(5, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 1.0, 1.0])  # image 3 is read as class 1: 4 of 5 right
    held = SimpleNamespace(images=lambda: x, attributes={"class": y, "bold": bold})
    labels = {"class": torch.tensor([0, 0, 1, 1, 2, 2]), "bold": torch.tensor([0, 1, 0, 1, 0, 1])}
    dm = SimpleNamespace(num_classes=3, eval_set=lambda which: held,
                         prompts=lambda reg, n, seed: PromptSet(["p"] * 6, torch.zeros(6, 1), labels))

    class Stub(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def zero_shot_logits(self, images, prompts, prompt_labels, k):
            if k == 3:
                return F.one_hot(images[:, 0, 0, 0].long(), 3).float()
            return torch.tensor([[0.0, 1.0]]).expand(len(images), 2)

    acc = zero_shot_accuracy(Stub(), dm, prompts_per_pair=1)
    assert acc == {"class": pytest.approx(4 / 5), "bold": pytest.approx(4 / 5)}


def test_retrieve_finds_each_image_itself():
    from diffzoo.networks.clip import retrieve

    torch.manual_seed(2)
    clip = tiny_clip().eval()
    x = torch.rand(7, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        z = clip.encode_image(x)
    assert retrieve(clip, x, z, chunk=3).tolist() == list(range(7))  # cos = 1 with itself, < 1 with the others
