"""Claims of unCLIP (Ramesh et al. 2022), checked on captioned 8×8 digits.

The three stages are the project's experiments, trained in order by :meth:`Context.trained`:
``clip_captioned_digits``, then ``unclip_prior_captioned_digits`` and
``unclip_decoder_captioned_digits`` on that CLIP's checkpoint (``model.clip_ckpt``). Classes of
generated images are read by the digits feature classifier (the FID feature space of
:mod:`diffzoo.claims.measure`); the class of a prior sample (an embedding, not an image) is the
label of the held-out image CLIP retrieves for it.

Not registered here: Table 1 / Fig. 9 (diversity against a GLIDE model at matched alignment) and
Fig. 11 (FID against guidance scale, unCLIP vs GLIDE), which need the GLIDE digits model of the
text-to-image claims next to these runs.
"""

from __future__ import annotations

import torch

from ..criteria import Greater, Measured
from ..measure import binomial
from ..figures import image_rows
from ..registry import Result, claim

# the paper key, until the registry lists it with the other papers

CLIP_STEPS = (1500, 60)        # training steps (full, quick): the experiments' own
PRIOR_STEPS = (1500, 40)
DECODER_STEPS = (1500, 40)
PROMPT_REPEATS = (10, 1)       # draws per (class, bold) prompt
VARIATION_SOURCES = (100, 4)   # held-out images whose variations are drawn
VARIATIONS = 4                 # variations per source
DECODE_STEPS = 50              # respaced ancestral steps of the decoder
GUIDANCE = 2.0                 # the decoder's CFG weight w (eq. 6) in the text → image comparison (§5.5 guides the decoder only)


def _stages(ctx, decoder: bool = True):
    clip = ctx.trained("clip_captioned_digits", ctx.budget(*CLIP_STEPS))
    override = f"model.clip_ckpt={clip.ckpt}"
    prior = ctx.trained("unclip_prior_captioned_digits", ctx.budget(*PRIOR_STEPS), override).load()
    dec = ctx.trained("unclip_decoder_captioned_digits", ctx.budget(*DECODER_STEPS), override).load() if decoder else None
    return prior, dec


def _data(module):
    from hydra.utils import instantiate

    data = instantiate(module.run_config["data"])
    data.setup("fit")
    return data


def _classes(ctx, module, images: torch.Tensor) -> torch.Tensor:
    """The digits feature classifier's class of images ``[N, 1, 8, 8]`` in ``[-1, 1]`` → ``[N]``."""
    from ...metrics import extract_features
    from ...utils.images import to_uint8

    return extract_features(ctx.quality(module).extractor, to_uint8(images)).logits.argmax(-1)


@claim("unclip_best_of_two", paper="unCLIP", where="§2.2 (sampling the diffusion prior)",
       statement="Drawing two prior samples and keeping the one with the higher ⟨z_i, z_t⟩ raises the mean "
                 "⟨z_i, z_t⟩ (by construction) and the caption alignment of the kept embedding.",
       criteria=[Greater("dot_best", "dot_single"), Greater("class_acc_best", "class_acc_single")],
       shown=("dot_best", "dot_single", "class_acc_best", "class_acc_single", "bold_acc_best", "bold_acc_single"))
def unclip_best_of_two(ctx) -> Result:
    from ...networks.clip import retrieve

    prior, _ = _stages(ctx, decoder=False)
    data = _data(prior)
    prompts = data.prompts("train", 2 * data.num_classes * ctx.budget(*PROMPT_REPEATS), ctx.seed)
    out = prior.sample_embeddings(prompts.text, num_candidates=2, seed=ctx.seed)
    held = data.eval_set("train")
    images = held.images()
    values: dict[str, Measured] = {}
    for tag, z in (("best", out.z_i), ("single", out.candidates[0])):
        dots = (z * out.z_t).sum(-1)
        values[f"dot_{tag}"] = Measured(float(dots.mean()), float(dots.std() / len(dots) ** 0.5))
        # the class / bold of the held-out image CLIP retrieves for the embedding, against the prompt's
        rows = retrieve(prior.clip, images, z)
        n = len(rows)
        for name in ("class", "bold"):
            acc = float((held.attributes[name][rows] == prompts.attributes[name]).double().mean())
            values[f"{name}_acc_{tag}"] = binomial(acc, n)
    return Result(values, setting=f"unclip_prior_captioned_digits, {len(prompts)} prompts (every class × bold / thin), "
                                  "2 candidates each; alignment = attributes of the held-out image CLIP retrieves",
                  note="'single' is the first of the two candidates of the same draw.")


@claim("unclip_variations", paper="unCLIP", where="§3.1, Fig. 3 (variations)",
       statement="Decoding an image's CLIP embedding with different noise keeps its content (the class) "
                 "while varying details (pairwise feature distance among the variations > 0).",
       criteria=[Greater("class_agreement", 0.5), Greater("diversity", 0.0)],
       shown=("class_agreement", "diversity", "classifier_acc_real"))
def unclip_variations(ctx) -> Result:
    from ...lit.unclip import UnCLIP
    from ...metrics import extract_features
    from ...samplers import SamplerSpec
    from ...utils.images import to_uint8

    _, dec = _stages(ctx)
    data = _data(dec)
    held = data.eval_set("train")
    k = min(ctx.budget(*VARIATION_SOURCES), len(held))
    x, y = held.images()[:k], held.attributes["class"][:k]
    u = UnCLIP(dec, sampler=SamplerSpec("ddpm", DECODE_STEPS))
    var = u.variations(x, VARIATIONS, seed=ctx.seed)
    cls = _classes(ctx, dec, var.images)
    agree = float((cls == y.repeat_interleave(VARIATIONS)).double().mean())
    feats = extract_features(ctx.quality(dec).extractor, to_uint8(var.images)).features.view(k, VARIATIONS, -1)
    pair = torch.cdist(feats, feats)  # [k, V, V]
    div = pair.sum((1, 2)) / (VARIATIONS * (VARIATIONS - 1))
    real = float((_classes(ctx, dec, x) == y).double().mean())
    values = {"class_agreement": binomial(agree, len(cls)),
              "diversity": Measured(float(div.mean()), float(div.std() / k ** 0.5)),
              "classifier_acc_real": binomial(real, k)}
    shown = min(20, k)
    grouped = var.images.view(k, VARIATIONS, *var.images.shape[1:])[:shown].cpu()
    rows = {"source": x[:shown].cpu(), **{f"variation {v + 1}": grouped[:, v] for v in range(VARIATIONS)}}
    grid = image_rows(rows, ctx.figure("unclip_variations"), "held-out digits (top) and decodings of their CLIP embeddings", shown)
    return Result(values, setting=f"unclip_decoder_captioned_digits, {k} held-out digits × {VARIATIONS} variations, "
                                  f"{DECODE_STEPS} ancestral steps, no caption, unguided", figures=[grid])


@claim("unclip_prior_matters", paper="unCLIP", where="§5.1 (FID 7.99 with the prior vs 16.55 feeding z_t zero-shot)",
       statement="The decoder fed a prior sample beats the same decoder fed the caption's CLIP text embedding "
                 "in place of an image embedding (caption alignment here).",
       criteria=[Greater("class_acc_prior", "class_acc_text_emb"), Greater("bold_acc_prior", "bold_acc_text_emb")],
       shown=("class_acc_prior", "class_acc_text_emb", "bold_acc_prior", "bold_acc_text_emb"))
def unclip_prior_matters(ctx) -> Result:
    from ...guidance import ClassifierFreeGuidance
    from ...lit.unclip import UnCLIP
    from ...samplers import SamplerSpec

    prior, dec = _stages(ctx)
    data = _data(dec)
    prompts = data.prompts("train", 2 * data.num_classes * ctx.budget(*PROMPT_REPEATS), ctx.seed)
    u = UnCLIP(dec, prior, decoder_guidance=ClassifierFreeGuidance(GUIDANCE), sampler=SamplerSpec("ddpm", DECODE_STEPS))
    values: dict[str, Measured] = {}
    for tag, fn in (("prior", u.text_to_image), ("text_emb", u.decode_text_embedding)):
        out = fn(prompts.text, seed=ctx.seed)
        n = len(prompts)
        cls = _classes(ctx, dec, out.images)
        values[f"class_acc_{tag}"] = binomial(float((cls == prompts.attributes["class"]).double().mean()), n)
        bold = data.attribute_of(out.images, prompts.attributes["class"])
        values[f"bold_acc_{tag}"] = binomial(float((bold == prompts.attributes["bold"]).double().mean()), n)
    return Result(values, setting=f"{len(prompts)} prompts (every class × bold / thin), decoder CFG w = {GUIDANCE:g} "
                                  f"(eq. 6), {DECODE_STEPS} ancestral steps; class by the digits classifier, bold by ink mass")
