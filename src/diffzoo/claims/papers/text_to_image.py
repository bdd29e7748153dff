"""Claims of the text-to-image papers (GLIDE, Imagen), checked on captioned 8×8 digits.

Every text model here is an experiment of the project (``glide_digits``, ``imagen_digits`` and
variants by override), trained by :meth:`Context.trained`. Sample ``i`` of a setting gets prompt
``i mod P`` of a fixed :class:`~diffzoo.data.captions.PromptSet` (``P`` = 20: every class × bold /
thin once, in the training phrasings or the held-out paraphrases). Caption alignment is read from the
pixels (:class:`~diffzoo.metrics.caption_alignment.ClassAttributeReader`: the class by the digits
feature classifier, bold / thin by the ink mass against the prompted class's training median);
FID is in the same classifier's features (:mod:`diffzoo.claims.measure`).

Guidance weights follow each paper's own convention: GLIDE's and Imagen's ``s`` (or ``w``) is
``ε_∅ + s·(ε_c − ε_∅)``, the project's CFG weight is ``s − 1`` (CFG eq. 6).
"""

from __future__ import annotations

import torch

from ..criteria import Greater, Less, Measured, Within
from ..figures import figure, image_rows
from ..measure import binomial, mean_se
from ..registry import Result, claim

TEXT_STEPS = (3000, 30)       # training steps of every text model (full, quick): the experiments' own
SAMPLES = (500, 24)           # samples per measured setting
PROMPTS = 20                  # prompts per register (10 classes × bold / thin)
SAMPLE_STEPS = 50             # respaced ancestral steps of every draw
IMAGEN_WEIGHTS = (1.0, 3.0, 5.0, 8.0, 12.0, 20.0)   # Imagen Fig. A.8's w (= s)
THRESHOLDS = ("none", "static", "dynamic")
SATURATED = 0.98              # |x| above this counts as a saturated pixel


def _tag(x: float) -> str:
    return f"{x:g}"


def _reader(ctx, module):
    """The caption-alignment reader of a captioned-digits model, with the digits feature classifier."""
    from hydra.utils import instantiate

    from ...metrics import extract_features
    from ...metrics.caption_alignment import ClassAttributeReader
    from ...utils.images import to_uint8

    quality = ctx.quality(module)
    data = instantiate(module.run_config["data"])

    def logits(images: torch.Tensor) -> torch.Tensor:
        return extract_features(quality.extractor, to_uint8(images)).logits

    return ClassAttributeReader.of(data, logits), data


def draw_prompted(module, prompts, n: int, seed: int, sampler, guidance=None, batch_size: int = 250):
    """``n`` samples of a text model, sample ``i`` for ``prompts.text[i mod P]``: images ``[n, C, H, W]``
    in ``[−1, 1]`` and their prompts' attributes (name → int64 ``[n]``)."""
    from ...samplers import sample_indices

    module.eval()
    den = module.denoiser(True)
    P, xs = len(prompts), []
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        cond = {"text": [prompts.text[i % P] for i in idx]}
        xs.append(sample_indices(den, sampler, idx, seed, module.data_shape, guidance=guidance, cond=cond).x.cpu())
    order = torch.arange(n) % P
    return torch.cat(xs), {k: v[order] for k, v in prompts.attributes.items()}


def _alignment(reader, images, attributes, suffix: str) -> dict[str, Measured]:
    from ...metrics.caption_alignment import caption_alignment

    acc = caption_alignment(images, attributes, reader)
    n = images.shape[0]
    return {f"{k}_acc{suffix}": binomial(v, n) for k, v in acc.items()}


def _cfg(s: float):
    """Classifier-free guidance at the papers' scale ``s`` (None at s = 1: the conditional model)."""
    from ...guidance import ClassifierFreeGuidance

    return ClassifierFreeGuidance(scale=s - 1.0) if s != 1.0 else None


# ------------------------------------------------------------------------------------------ Imagen
@claim("imagen_dynamic_thresholding", paper="Imagen", where="§2.3, Fig. A.8 (w from 1 to 20)",
       statement="At large guidance weights dynamic thresholding keeps sample quality where static clipping "
                 "saturates pixels and loses FID; without any thresholding sampling diverges.",
       # "diverges": the unthresholded chain leaves the data range [-1, 1] by more than an order of magnitude
       criteria=[Less("fid_dynamic_w8", "fid_static_w8"), Less("fid_dynamic_w12", "fid_static_w12"),
                 Greater("saturated_static_w12", "saturated_dynamic_w12"), Greater("max_abs_none_w20", 10.0)],
       shown=("fid_static_w8", "fid_dynamic_w8", "fid_static_w12", "fid_dynamic_w12", "saturated_static_w12",
              "saturated_dynamic_w12", "all_acc_dynamic_w8", "all_acc_static_w8"))
def imagen_dynamic_thresholding(ctx) -> Result:
    from ...samplers import SamplerSpec

    run = ctx.trained("imagen_digits", ctx.budget(*TEXT_STEPS))
    module = run.load()
    reader, data = _reader(ctx, module)
    quality = ctx.quality(module)
    prompts = data.prompts("train", PROMPTS, ctx.seed)
    n = ctx.budget(*SAMPLES)
    values, previews = {}, {}
    for mode in THRESHOLDS:
        for w in IMAGEN_WEIGHTS:
            spec = SamplerSpec("ddpm", SAMPLE_STEPS, clip_x0=False, threshold=mode, threshold_percentile=99.5)
            x, attrs = draw_prompted(module, prompts, n, ctx.seed, spec, _cfg(w))
            tag = f"_{mode}_w{_tag(w)}"
            finite = torch.isfinite(x).all()
            values[f"max_abs{tag}"] = Measured(float(x.abs().max()) if finite else float("inf"))
            x = x.nan_to_num(0.0).clamp(-1, 1)
            values[f"saturated{tag}"] = binomial(float((x.abs() > SATURATED).double().mean()), x.numel())
            values[f"fid{tag}"] = quality(x).fid
            values.update(_alignment(reader, x, attrs, tag))
            if w in (3.0, 12.0):
                previews[f"{mode}, w = {_tag(w)}"] = x[:20]
    plot = ctx.figure("imagen_thresholding")
    with figure(plot, 1, 3, figsize=(12, 3.6), title="Thresholding x̂₀ under classifier-free guidance (imagen_digits)") as (_, axes):
        for mode in THRESHOLDS:
            for ax, key, label in zip(axes, ("fid", "saturated", "all_acc"), ("FID (digits features)", "saturated pixel fraction",
                                                                                "caption alignment (class and bold/thin)")):
                ys = [values[f"{key}_{mode}_w{_tag(w)}"] for w in IMAGEN_WEIGHTS]
                ax.errorbar(IMAGEN_WEIGHTS, [y.value for y in ys], yerr=[2 * y.se for y in ys], marker="o", capsize=3, label=mode)
                ax.set_xlabel("guidance weight w (Imagen's)")
                ax.set_ylabel(label)
                ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
    grid = image_rows(previews, ctx.figure("imagen_thresholding_samples"), "samples by thresholding and guidance weight", 20)
    return Result(values, f"experiment=imagen_digits ({run.steps} steps; frozen MiniLM, cross-attention, 10 % empty captions); "
                          f"{n} samples per setting over {PROMPTS} training prompts, {SAMPLE_STEPS} respaced ancestral steps, "
                          "dynamic thresholding at p = 99.5", [plot, grid],
                  note="none = no clipping of x̂₀ at all; static = clip to [−1, 1]; saturated = |x| > 0.98. On 64-pixel "
                       "images the 99.5th percentile of |x̂₀| is close to its maximum.")


def _encoder_comparison(ctx, experiments: dict[str, tuple[str, ...]], registers=("train", "heldout")):
    """Train each ``name → (experiment, *overrides)`` and measure caption alignment (conditional
    model, s = 1) on each prompt register; returns values keyed ``<attr>_acc_<register>_<name>``."""
    from ...samplers import SamplerSpec

    values, runs = {}, {}
    n = ctx.budget(*SAMPLES)
    for name, (experiment, *overrides) in experiments.items():
        run = ctx.trained(experiment, ctx.budget(*TEXT_STEPS), *overrides)
        module = run.load()
        reader, data = _reader(ctx, module)
        runs[name] = run
        for register in registers:
            prompts = data.prompts(register, PROMPTS, ctx.seed)
            x, attrs = draw_prompted(module, prompts, n, ctx.seed, SamplerSpec("ddpm", SAMPLE_STEPS))
            values.update(_alignment(reader, x, attrs, f"_{register}_{name}"))
    return values, runs, n


def _difference(values, a: str, b: str) -> Measured:
    x, y = values[a], values[b]
    return Measured(x.value - y.value, (x.se ** 2 + y.se ** 2) ** 0.5)


@claim("imagen_frozen_text_encoder", paper="Imagen", where="§4.4 and Fig. 4a (scaling the frozen text encoder), App. D.1",
       statement="A frozen pretrained language model conditions better than a text encoder trained from scratch on "
                 "phrasings never seen in training, and about as well on the training phrasings.",
       criteria=[Greater("all_acc_heldout_frozen", "all_acc_heldout_scratch"), Within("all_acc_train_gap", 0.0, 0.1)],
       shown=("all_acc_heldout_frozen", "all_acc_heldout_scratch", "all_acc_train_frozen", "all_acc_train_scratch",
              "class_acc_heldout_frozen", "class_acc_heldout_scratch"))
def imagen_frozen_text_encoder(ctx) -> Result:
    values, runs, n = _encoder_comparison(ctx, {
        "frozen": ("imagen_digits",),
        # the same U-Net with a jointly trained word-level Transformer (GLIDE's), unseen words -> <unk>
        "scratch": ("text_digits", "net.text_conditioning=cross_attention", "++net.cross_attention_resolutions=[4]",
                    "model.caption_drop_prob=0.1", "schedule=cosine"),
    })
    values["all_acc_train_gap"] = _difference(values, "all_acc_train_frozen", "all_acc_train_scratch")
    return Result(values, f"imagen_digits (frozen MiniLM) vs text_digits with cross-attention (scratch GLIDE Transformer), "
                          f"{runs['frozen'].steps} steps each; {n} samples per register over {PROMPTS} prompts, no guidance",
                  note="held-out prompts are paraphrases whose words the scratch tokenizer never saw (they map to <unk>).")


SHAPES_STEPS = (1500, 30)    # training steps of each shapes model (full, quick): 16×16 RGB costs ~4× a digits step
SHAPES_SCRATCH = ("text_encoder=glide_transformer", "net.text_dim=64", "text_encoder.context_length=20",
                  "+model.tokenizer={_target_:diffzoo.lit.text_diffusion.data_tokenizer,data:${data}}")


def _pairs_correct(pred: dict, attributes: dict) -> torch.Tensor:
    """Bool ``[B]``: every shape the prompt names has its colour and its shape read right (slot ``b``
    only where the prompt has a second shape) — the composition, whatever size or relation."""
    ok = (pred["color_a"] == attributes["color_a"]) & (pred["shape_a"] == attributes["shape_a"])
    two = attributes["color_b"] >= 0
    return ok & (~two | ((pred["color_b"] == attributes["color_b"]) & (pred["shape_b"] == attributes["shape_b"])))


@claim("imagen_frozen_text_encoder_compositions", paper="Imagen", where="§4.4 (DrawBench compositionality), App. D.1",
       statement="On colour–shape compositions held out of training, a frozen pretrained language model conditions "
                 "better than a text encoder trained from scratch, and about as well on the training compositions.",
       criteria=[Greater("pairs_acc_heldout_frozen", "pairs_acc_heldout_scratch"), Within("pairs_acc_train_gap", 0.0, 0.1)],
       shown=("pairs_acc_heldout_frozen", "pairs_acc_heldout_scratch", "pairs_acc_train_frozen", "pairs_acc_train_scratch",
              "all_acc_heldout_frozen", "all_acc_heldout_scratch"))
def imagen_frozen_text_encoder_compositions(ctx) -> Result:
    from hydra.utils import instantiate

    from ...metrics.attribute_classifier import load_or_train_shapes_classifier
    from ...metrics.caption_alignment import caption_alignment
    from ...samplers import SamplerSpec

    n = ctx.budget(*SAMPLES)
    values, runs, previews = {}, {}, {}
    for name, overrides in (("frozen", ()), ("scratch", SHAPES_SCRATCH)):
        run = ctx.trained("imagen_shapes", ctx.budget(*SHAPES_STEPS), *overrides)
        module, runs[name] = run.load(), run
        data = instantiate(module.run_config["data"])
        reader, card, _ = load_or_train_shapes_classifier(ctx.cache_dir / "classifiers", image_size=data.image_size,
                                                          supersample=data.supersample)
        for register in ("train", "heldout"):
            prompts = data.prompts(register, PROMPTS, ctx.seed)
            x, attrs = draw_prompted(module, prompts, n, ctx.seed, SamplerSpec("ddpm", SAMPLE_STEPS))
            x = x.clamp(-1, 1)
            tag = f"_{register}_{name}"
            values.update({f"{k}_acc{tag}": binomial(v, n) for k, v in caption_alignment(x, attrs, reader).items()})
            values[f"pairs_acc{tag}"] = binomial(float(_pairs_correct(reader(x), attrs).double().mean()), n)
            if register == "heldout":
                previews[f"{name} encoder, held-out"] = x[:20]
    values["pairs_acc_train_gap"] = _difference(values, "pairs_acc_train_frozen", "pairs_acc_train_scratch")
    values["reader_min_accuracy"] = Measured(min(card.test_accuracy.values()))
    grid = image_rows(previews, ctx.figure("imagen_shapes_compositions"), "held-out compositions (prompts of the first 20 samples)", 20)
    return Result(values, f"experiment=imagen_shapes (frozen MiniLM) vs the same with GLIDE's scratch Transformer, "
                          f"{runs['frozen'].steps} steps each; {n} samples per register over {PROMPTS} prompts, "
                          f"{SAMPLE_STEPS} ancestral steps, no guidance; held-out pairs {sorted(data.heldout)} (colour, shape ids)",
                  [grid], note="pairs = every named shape has its colour and shape right (the composition); all = every "
                               "attribute including size and relation. The shapes attribute classifier reads fresh renders "
                               "at the accuracy reader_min_accuracy (its worst attribute).")


@claim("imagen_cross_attention", paper="Imagen", where="App. D.3.1, Fig. A.13a (pooling vs cross-attention)",
       statement="Conditioning on the text sequence by cross-attention aligns images with their captions better "
                 "than conditioning on a pooled text embedding alone.",
       criteria=[Greater("all_acc_train_xattn", "all_acc_train_pooled")],
       shown=("all_acc_train_xattn", "all_acc_train_pooled", "class_acc_train_xattn", "class_acc_train_pooled",
              "bold_acc_train_xattn", "bold_acc_train_pooled"))
def imagen_cross_attention(ctx) -> Result:
    values, runs, n = _encoder_comparison(ctx, {
        "xattn": ("imagen_digits",),
        "pooled": ("imagen_digits", "net.text_conditioning=pooled", "net.cross_attention_resolutions=[]"),
    }, registers=("train",))
    return Result(values, f"imagen_digits with cross-attention at 4×4 vs pooled MiniLM vector only, {runs['xattn'].steps} steps "
                          f"each; {n} samples over {PROMPTS} training prompts, no guidance",
                  note="MiniLM's pooled vectors are dominated by the template: cos('a bold digit seven', 'a bold digit one') "
                       "> cos('a bold digit seven', 'a thin digit seven').")


# ------------------------------------------------------------------------------------------ GLIDE
@claim("glide_guidance_beats_size", paper="GLIDE", where="App. C, Table 4 (300M with guidance vs 3.5B without)",
       statement="A much smaller model with classifier-free guidance follows its captions better than the full "
                 "model without guidance.",
       criteria=[Greater("all_acc_small_s3", "all_acc_full_s1")],
       shown=("all_acc_small_s3", "all_acc_full_s1", "all_acc_small_s1", "class_acc_small_s3", "class_acc_full_s1"))
def glide_guidance_beats_size(ctx) -> Result:
    from ...samplers import SamplerSpec

    n = ctx.budget(*SAMPLES)
    values, runs = {}, {}
    for name, overrides in {"full": (), "small": ("net.base_channels=8", "net.num_groups=4")}.items():
        run = runs[name] = ctx.trained("glide_digits", ctx.budget(*TEXT_STEPS), *overrides)
        module = run.load()
        reader, data = _reader(ctx, module)
        prompts = data.prompts("train", PROMPTS, ctx.seed)
        for s in (1.0, 3.0):
            x, attrs = draw_prompted(module, prompts, n, ctx.seed, SamplerSpec("ddpm", SAMPLE_STEPS, variance="learned_range"), _cfg(s))
            values.update(_alignment(reader, x, attrs, f"_{name}_s{_tag(s)}"))
        values[f"params_{name}"] = Measured(float(sum(p.numel() for p in module.net.parameters())))
    return Result(values, f"glide_digits at base_channels 32 ({values['params_full'].value / 1e6:.2f}M) and 8 "
                          f"({values['params_small'].value / 1e6:.3f}M), {runs['full'].steps} steps each; {n} samples over "
                          f"{PROMPTS} training prompts; GLIDE's s = 3 is CFG w = 2")


INPAINT_STEPS = (600, 20)     # fine-tuning steps of the inpainting model (full, quick): the experiment's own


def mask_edge_jump(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute step across the mask's edge, per image: ``|x_p − x_q|`` over the horizontally or
    vertically adjacent pixel pairs with one known and one filled pixel (``images`` ``[N, C, H, W]``,
    ``mask`` ``[N, 1, H, W]``, 1 = known) → ``[N]``. A seam shows as a larger jump than the real
    images have across the same edges (GLIDE §4.3: replacement "often has edge artifacts")."""
    jumps, counts = torch.zeros(images.shape[0]), torch.zeros(images.shape[0])
    for dim in (2, 3):
        n = images.shape[dim] - 1
        a, b = images.narrow(dim, 0, n), images.narrow(dim, 1, n)
        edge = (mask.narrow(dim, 0, n) != mask.narrow(dim, 1, n)).float()
        jumps += ((a - b).abs() * edge).sum((1, 2, 3)) / images.shape[1]
        counts += edge.sum((1, 2, 3))
    return jumps / counts.clamp(min=1)


@claim("glide_inpainting", paper="GLIDE", where="§4.3, Fig. 4 (fine-tuned inpainting vs replacement)",
       statement="A model fine-tuned for inpainting (known image and mask as extra inputs) fills erased regions in "
                 "keeping with the caption and without the seams of replacement-based inpainting.",
       criteria=[Greater("all_acc_finetuned", "all_acc_replacement"), Less("edge_jump_finetuned", "edge_jump_replacement")],
       shown=("all_acc_finetuned", "all_acc_replacement", "edge_jump_finetuned", "edge_jump_replacement", "edge_jump_real"))
def glide_inpainting(ctx) -> Result:
    from ...lit.inpainting import random_box_masks
    from ...samplers import SamplerSpec, replace_inpaint, sample_indices

    base_run = ctx.trained("glide_digits", ctx.budget(*TEXT_STEPS))
    tuned_run = ctx.trained("glide_inpaint_digits", ctx.budget(*INPAINT_STEPS), f"model.base_ckpt={base_run.ckpt}")
    base, tuned = base_run.load(), tuned_run.load()
    reader, data = _reader(ctx, base)
    real = data.eval_set("train")
    n = min(ctx.budget(*SAMPLES), len(real))
    batch = real.__getitems__(list(range(n)))
    x0, text = batch["x"], batch["text"]
    attrs = {k: v for k, v in batch["attributes"].items()}
    mask = random_box_masks(n, x0.shape[2], x0.shape[3], 0.4, 0.6, torch.Generator().manual_seed(ctx.seed))
    spec = SamplerSpec("ddpm", SAMPLE_STEPS, variance="learned_range")
    den = tuned.denoiser(True)
    filled = sample_indices(den, spec, range(n), ctx.seed, tuned.data_shape,
                            cond={"text": text, "masked_image": x0 * mask, "mask": mask}).x
    base_den = base.denoiser(True).bind(text=text)
    x_T = base_den.process.prior_sample((n, *base.data_shape), torch.Generator().manual_seed(ctx.seed))
    replaced = base_den.to_data(replace_inpaint(base_den, x_T, x0, mask.bool(), steps=SAMPLE_STEPS, variance="learned_range",
                                                generator=torch.Generator().manual_seed(ctx.seed)))
    values = {}
    for name, x in {"finetuned": x0 * mask + filled * (1 - mask), "replacement": x0 * mask + replaced * (1 - mask),
                    "real": x0}.items():
        x = x.clamp(-1, 1)
        jump = mask_edge_jump(x, mask)
        values[f"edge_jump_{name}"] = mean_se(jump)
        if name != "real":
            values.update(_alignment(reader, x, attrs, f"_{name}"))
    previews = {"erased": x0 * mask + (mask - 1), "fine-tuned": (x0 * mask + filled * (1 - mask)).clamp(-1, 1),
                "replacement": (x0 * mask + replaced * (1 - mask)).clamp(-1, 1), "real": x0}
    grid = image_rows({k: v[:20] for k, v in previews.items()}, ctx.figure("glide_inpainting"),
                      "inpainting: erased region (black), fine-tuned model, replacement, original", 20)
    return Result(values, f"glide_digits ({base_run.steps} steps) and glide_inpaint_digits fine-tuned from it "
                          f"({tuned_run.steps} steps); {n} training digits with their captions, one erased rectangle "
                          f"each (sides 40–60 %), {SAMPLE_STEPS} ancestral steps; replacement = the base model with the "
                          "known pixels replaced by q(x_t | x_0) after every ancestral step (Score SDE App. I.2 in discrete time)", [grid],
                  note="alignment of the completed image with its caption (class by the digits classifier, bold/thin by "
                       "ink mass); edge jump = mean |Δx| across the mask edge, the real digits' own value beside it.")


CFG_SCALES = (1.0, 2.0, 3.0, 5.0)     # GLIDE's s for classifier-free guidance (1 = unguided)
CLIP_SCALES = (1.0, 2.0, 4.0, 8.0)    # CLIP-guidance scales
CLIP_STEPS = (2000, 30)               # training steps of each CLIP (full, quick): the experiments' own


@claim("glide_cfg_vs_clip_guidance", paper="GLIDE", where="§5.2, Table 1 and Fig. 6 (CFG vs CLIP guidance)",
       statement="Classifier-free guidance aligns samples with their captions better than CLIP guidance, as judged "
                 "by an evaluation CLIP and an attribute reader, while CLIP guidance raises the score of the CLIP "
                 "that guides it more than classifier-free guidance does.",
       criteria=[Greater("all_acc_cfg_best", "all_acc_clip_best"), Greater("eval_clip_cfg_best", "eval_clip_clip_best"),
                 Greater("guiding_gain_clip", "guiding_gain_cfg")],
       shown=("all_acc_cfg_best", "all_acc_clip_best", "eval_clip_cfg_best", "eval_clip_clip_best", "guiding_gain_clip",
              "guiding_gain_cfg", "all_acc_cfg_s1"))
def glide_cfg_vs_clip_guidance(ctx) -> Result:
    from ...guidance.clip import CLIPGuidance
    from ...metrics.clip_score import clip_score
    from ...samplers import SamplerSpec

    run = ctx.trained("glide_digits", ctx.budget(*TEXT_STEPS))
    guiding_run = ctx.trained("noised_clip_captioned_digits", ctx.budget(*CLIP_STEPS))
    eval_run = ctx.trained("clip_captioned_digits", ctx.budget(*CLIP_STEPS))
    module = run.load()
    guiding, evaluation = guiding_run.load().net, eval_run.load().net
    reader, data = _reader(ctx, module)
    quality = ctx.quality(module)
    prompts = data.prompts("train", PROMPTS, ctx.seed)
    n = ctx.budget(*SAMPLES)
    spec = SamplerSpec("ddpm", SAMPLE_STEPS, variance="learned_range")
    settings = [("cfg", s, _cfg(s)) for s in CFG_SCALES] + [("clip", s, CLIPGuidance(guiding, scale=s)) for s in CLIP_SCALES]
    values, previews = {}, {}
    for method, s, guidance in settings:
        x, attrs = draw_prompted(module, prompts, n, ctx.seed, spec, guidance)
        captions = [prompts.text[i % len(prompts)] for i in range(n)]
        tag = f"_{method}_s{_tag(s)}"
        values.update(_alignment(reader, x, attrs, tag))
        for name, clip in (("eval_clip", evaluation), ("guiding_clip", guiding)):
            score = clip_score(clip, x, captions)
            values[f"{name}{tag}"] = Measured(score["clip_score"], score["clip_score_se"])
        values[f"fid{tag}"] = quality(x).fid
        previews[f"{method} s = {_tag(s)}"] = x[:20]
    for method, scales in (("cfg", CFG_SCALES), ("clip", CLIP_SCALES)):
        best = max(scales, key=lambda s: values[f"all_acc_{method}_s{_tag(s)}"].value)
        values[f"all_acc_{method}_best"] = values[f"all_acc_{method}_s{_tag(best)}"]
        values[f"eval_clip_{method}_best"] = values[f"eval_clip_{method}_s{_tag(best)}"]
        values[f"guiding_gain_{method}"] = _difference(values, f"guiding_clip_{method}_s{_tag(scales[-1])}", "guiding_clip_cfg_s1")
    plot = ctx.figure("glide_cfg_vs_clip")
    with figure(plot, 1, 2, figsize=(10, 3.8), title="GLIDE on captioned digits: classifier-free vs CLIP guidance") as (_, (a, b)):
        for method, scales in (("cfg", CFG_SCALES), ("clip", CLIP_SCALES)):
            fid = [values[f"fid_{method}_s{_tag(s)}"].value for s in scales]
            acc = [values[f"all_acc_{method}_s{_tag(s)}"].value for s in scales]
            a.plot(acc, fid, marker="o", label=method)
            b.plot([values[f"eval_clip_{method}_s{_tag(s)}"].value for s in scales],
                   [values[f"guiding_clip_{method}_s{_tag(s)}"].value for s in scales], marker="o", label=method)
        a.set_xlabel("caption alignment (class and bold/thin)")
        a.set_ylabel("FID (digits features)")
        b.set_xlabel("evaluation CLIP score")
        b.set_ylabel("guiding CLIP score")
        for ax in (a, b):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    grid = image_rows(previews, ctx.figure("glide_cfg_vs_clip_samples"), "samples by guidance method and scale", 20)
    return Result(values, f"glide_digits ({run.steps} steps); noised CLIP ({guiding_run.steps} steps on x_t of its cosine "
                          f"schedule) guides, a separately trained clean CLIP ({eval_run.steps} steps) evaluates; {n} samples "
                          f"per setting over {PROMPTS} training prompts, {SAMPLE_STEPS} ancestral steps; CFG s ∈ "
                          f"{list(CFG_SCALES)}, CLIP scale ∈ {list(CLIP_SCALES)} (mean form, as the released sampler)",
                  [plot, grid], note="best = the scale with the highest alignment of each method; guiding gain = the guiding "
                                     "CLIP's score at the largest scale minus unguided.")
