"""Claims of unCLIP (Ramesh et al. 2022), checked on captioned 8×8 digits.

The three stages are the project's experiments, trained in order by :meth:`Context.trained`:
``clip_captioned_digits``, then ``unclip_prior_captioned_digits`` and
``unclip_decoder_captioned_digits`` on that CLIP's checkpoint (``model.clip_ckpt``). Classes of
generated images are read by the digits feature classifier (the FID feature space of
:mod:`diffzoo.claims.measure`); the class of a prior sample (an embedding, not an image) is the
label of the held-out image CLIP retrieves for it.

The comparisons with GLIDE (Table 1 / Figs. 9–10: diversity at matched alignment and under guidance;
Fig. 11: FID against guidance scale) use the ``glide_digits`` model of the text-to-image claims
(:mod:`diffzoo.claims.papers.text_to_image`), trained at the same budget there and here, so both share
one run by config hash. One sweep — both models, the same prompts, draws and guidance scales — serves
both claims (it is drawn once per process and reused by the second).
"""

from __future__ import annotations

import torch

from ..criteria import Greater, Less, Measured
from ..figures import figure, image_rows
from ..measure import binomial, mean_se
from ..registry import Result, claim
from .text_to_image import TEXT_STEPS, draw_prompted

# the paper key, until the registry lists it with the other papers

CLIP_STEPS = (1500, 60)        # training steps (full, quick): the experiments' own
PRIOR_STEPS = (1500, 40)
DECODER_STEPS = (1500, 40)
PROMPT_REPEATS = (10, 1)       # draws per (class, bold) prompt
VARIATION_SOURCES = (100, 4)   # held-out images whose variations are drawn
VARIATIONS = 4                 # variations per source
DECODE_STEPS = 50              # respaced ancestral steps of the decoder
GUIDANCE = 2.0                 # the decoder's CFG weight w (eq. 6) in the text → image comparison (§5.5 guides the decoder only)


def _stage_runs(ctx, decoder: bool = True):
    """The trained prior and decoder runs (:class:`~diffzoo.claims.context.TrainedRun`), on one CLIP."""
    clip = ctx.trained("clip_captioned_digits", ctx.budget(*CLIP_STEPS))
    override = f"model.clip_ckpt={clip.ckpt}"
    prior = ctx.trained("unclip_prior_captioned_digits", ctx.budget(*PRIOR_STEPS), override)
    dec = ctx.trained("unclip_decoder_captioned_digits", ctx.budget(*DECODER_STEPS), override) if decoder else None
    return prior, dec


def _stages(ctx, decoder: bool = True):
    prior, dec = _stage_runs(ctx, decoder)
    return prior.load(), (dec.load() if dec is not None else None)


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
        values[f"dot_{tag}"] = mean_se(dots)
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
              "diversity": mean_se(div),
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


# ---------------------------------------------------------------------------- unCLIP against GLIDE
# §5.3 compares the two by sweeping the guidance scale of GLIDE and of unCLIP's *decoder* only (Fig. 11:
# "we fix the guidance scale of the unCLIP prior and only vary the guidance scale of the decoder"; the prior
# is fixed unguided here, as in unclip_prior_matters). The papers' scale s is ε_∅ + s·(ε_c − ε_∅) (GLIDE §2.3);
# the project's CFG weight is w = s − 1 (CFG eq. 6), so w ∈ {0, 1, 2, 4} is s ∈ {1, 2, 3, 5}, w = 0 (s = 1)
# unguided — the GLIDE claims' CFG_SCALES.
SWEEP_W = (0.0, 1.0, 2.0, 4.0)
W_MAX = f"w{SWEEP_W[-1]:g}"
SWEEP_PROMPTS = 20              # every class × bold / thin once (prompt j: class j // 2, bold j mod 2)
SWEEP_REPEATS = (20, 3)         # draws per prompt (full, quick): diversity is measured among one prompt's draws
MODELS = ("unclip", "glide")
# a diagnostic arm, in no criterion: unCLIP's decoder fed *real* CLIP image embeddings of held-out digits with the
# prompt's class and weight — a perfect prior — to tell a prior's collapse from the decoder's own response to guidance
ORACLE = "oracle"
_SWEEPS: dict = {}              # one sweep per (budget, seed, checkpoints), shared by the two claims below


def _w(w: float) -> str:
    return f"w{w:g}"


def _per_prompt_diversity(features: torch.Tensor, P: int, R: int) -> torch.Tensor:
    """Mean pairwise feature distance among the ``R`` draws of each of ``P`` prompts → ``[P]``; sample
    ``i`` is draw ``i // P`` of prompt ``i mod P`` (``features [R·P, d]``). The measure of
    ``unclip_variations``, applied to one caption's samples: Fig. 9's "semantics converge" read in the
    digits classifier's feature space (0 = identical samples)."""
    f = features.view(R, P, -1).transpose(0, 1)  # [P, R, d]
    return torch.cdist(f, f).sum((1, 2)) / (R * (R - 1))


def _relative_drop(before: torch.Tensor, after: torch.Tensor) -> Measured:
    """``1 − D̄_after / D̄_before`` (the fraction of diversity guidance removes) from per-prompt diversities
    ``[P]`` of the same prompts and noises; s.e. by the delta method for a ratio of means, paired by prompt:
    ``sd(after_p − r·before_p) / (√P · D̄_before)``. Relative, so a model is not credited for having less to lose."""
    P, a, b = before.numel(), before.double(), after.double()
    r = float(b.mean() / a.mean())
    return Measured(1.0 - r, float((b - r * a).std() / (P ** 0.5 * a.mean())))


def _oracle_embeddings(dec, data, prompts, R: int, seed: int) -> torch.Tensor:
    """CLIP image embeddings ``[R·P, d]`` of held-out digits matching each prompt's class and bold / thin
    (sample ``i``: draw ``i // P`` of prompt ``i mod P``, as the sweep), ``R`` distinct images per prompt
    where the held-out set has them (cycled otherwise); the draws of a prompt are as diverse as real data."""
    from ...lit.unclip import UnCLIP

    held = data.eval_set("train")
    images, P = held.images(), len(prompts)
    z = torch.empty(R * P, dec.clip.embed_dim)
    embed = UnCLIP(dec).image_embeddings
    for p in range(P):
        match = (held.attributes["class"] == prompts.attributes["class"][p]) & (held.attributes["bold"] == prompts.attributes["bold"][p])
        idx = match.nonzero().flatten()
        pick = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + p))[:R]]
        pick = pick[torch.arange(R) % len(pick)]
        z[torch.arange(R) * P + p] = embed(images[pick]).cpu()
    return z


def _sweep(ctx) -> dict:
    """Both models at every ``SWEEP_W``: the same ``P × R`` captions, the same ancestral step count and
    the same noise indices (sample ``i``: index ``i``, seed ``ctx.seed``); per model and scale the class,
    bold and joint alignment, per-prompt diversity and FID. Drawn once, then reused (second claim)."""
    from ...guidance import ClassifierFreeGuidance
    from ...lit.unclip import UnCLIP
    from ...metrics import extract_features
    from ...samplers import SamplerSpec
    from ...utils.images import to_uint8

    glide_run = ctx.trained("glide_digits", ctx.budget(*TEXT_STEPS))  # the text-to-image claims' run (same hash)
    prior_run, dec_run = _stage_runs(ctx)
    key = (ctx.quick, ctx.seed, str(ctx.cache_dir),
           *((str(r.ckpt), r.ckpt.stat().st_mtime_ns) for r in (glide_run, prior_run, dec_run)))
    if key in _SWEEPS:
        return _SWEEPS[key]
    prior, dec, glide = prior_run.load(), dec_run.load(), glide_run.load()
    data = _data(dec)
    base = data.prompts("train", SWEEP_PROMPTS, ctx.seed)
    P, R = len(base), ctx.budget(*SWEEP_REPEATS)
    n = P * R
    captions = [base.text[i % P] for i in range(n)]  # R draws of each prompt, the same caption string each time
    target = {k: v[torch.arange(n) % P] for k, v in base.attributes.items()}
    # every image is scored in one feature space: the unCLIP decoder's data set (the same digits as GLIDE's)
    quality = ctx.quality(dec)
    # unCLIP: one best-of-2 prior sample per draw (§2.2, as unclip_prior_matters), fixed across scales
    # (Fig. 9: "we fix the latent vectors sampled from the prior, and only vary the guidance scale of the decoder")
    z_i = prior.sample_embeddings(captions, num_candidates=2, seed=ctx.seed).z_i
    z_oracle = _oracle_embeddings(dec, data, base, R, ctx.seed)
    # each model with its own ancestral sampler (unCLIP's decoder: fixed variance; GLIDE: its learned Σ), same steps
    spec_u = SamplerSpec("ddpm", DECODE_STEPS)
    spec_g = SamplerSpec("ddpm", DECODE_STEPS, variance="learned_range")
    values: dict[str, Measured] = {}
    diversity: dict[tuple[str, float], torch.Tensor] = {}
    previews: dict[tuple[str, float], torch.Tensor] = {}
    order = [r * P + p for p in range(P) for r in range(R)][:20]  # the first prompts' draws, side by side
    for w in SWEEP_W:
        guidance = ClassifierFreeGuidance(w) if w else None
        u = UnCLIP(dec, prior, decoder_guidance=guidance, sampler=spec_u)
        images = {"unclip": u.decode(z_i, captions, range(n), ctx.seed).images,
                  "glide": draw_prompted(glide, base, n, ctx.seed, spec_g, guidance)[0],
                  ORACLE: UnCLIP(dec, None, decoder_guidance=guidance, sampler=spec_u).decode(z_oracle, captions, range(n), ctx.seed).images}
        for m, x in images.items():
            x = x.clamp(-1, 1)
            tag = f"_{m}_{_w(w)}"
            feats = extract_features(quality.extractor, to_uint8(x))
            # alignment as unclip_prior_matters: class by the digits classifier, bold by ink mass vs the class median
            cls_ok = feats.logits.argmax(-1).cpu() == target["class"]
            bold_ok = data.attribute_of(x, target["class"]) == target["bold"]
            values[f"class_acc{tag}"] = binomial(float(cls_ok.double().mean()), n)
            values[f"bold_acc{tag}"] = binomial(float(bold_ok.double().mean()), n)
            values[f"all_acc{tag}"] = binomial(float((cls_ok & bold_ok).double().mean()), n)
            d = diversity[m, w] = _per_prompt_diversity(feats.features.cpu(), P, R)
            values[f"diversity{tag}"] = mean_se(d)  # s.e. over prompts
            values[f"fid{tag}"] = quality(x).fid  # FID against the real training digits (Fig. 11), bootstrap s.e.
            if w in (SWEEP_W[0], SWEEP_W[-1]) and m in MODELS:
                previews[m, w] = x[order].cpu()
    w0, wmax = SWEEP_W[0], SWEEP_W[-1]
    for m in (*MODELS, ORACLE):
        # Fig. 9: how much of its unguided diversity guidance takes away (relative, paired by prompt)
        values[f"diversity_drop_{m}"] = _relative_drop(diversity[m, w0], diversity[m, wmax])
        lost = diversity[m, w0] - diversity[m, wmax]
        values[f"diversity_lost_{m}"] = mean_se(lost)
        # Fig. 11: FID at the largest scale minus unguided; the two bootstrap s.e. combined as if independent
        # (conservative: the two cells share their noise)
        a, b = values[f"fid_{m}_{_w(w0)}"], values[f"fid_{m}_{_w(wmax)}"]
        values[f"fid_rise_{m}"] = Measured(b.value - a.value, (a.se ** 2 + b.se ** 2) ** 0.5)
    # matched alignment (§5.3 / Fig. 10: GLIDE's scale lowered until its caption similarity is unCLIP's):
    # A* = the highest joint alignment both models reach in the sweep (the smaller of their maxima); each
    # model is taken at its *least* guidance whose alignment is within 2 s.e. of A* — its most diverse
    # setting at that alignment. Fixed before the run, symmetric in the two models.
    best = min(max(values[f"all_acc_{m}_{_w(w)}"].value for w in SWEEP_W) for m in MODELS)
    matched = {}
    for m in MODELS:
        matched[m] = next(w for w in SWEEP_W if values[f"all_acc_{m}_{_w(w)}"].value >= best - 2 * values[f"all_acc_{m}_{_w(w)}"].se)
        for k in ("diversity", "all_acc", "fid"):
            values[f"{k}_{m}_matched"] = values[f"{k}_{m}_{_w(matched[m])}"]
        values[f"w_{m}_matched"] = Measured(matched[m])
    au, ag = values["all_acc_unclip_matched"], values["all_acc_glide_matched"]
    values["all_acc_gap_matched"] = Measured(au.value - ag.value, (au.se ** 2 + ag.se ** 2) ** 0.5)
    previews = {f"{'unCLIP' if m == 'unclip' else 'GLIDE'} w = {w:g}": previews[m, w] for m in MODELS for w in (w0, wmax)}
    sweep = {"values": values, "previews": previews, "P": P, "R": R, "matched": matched, "alignment": best,
             "steps": {"glide": glide_run.steps, "prior": prior_run.steps, "decoder": dec_run.steps}}
    _SWEEPS[key] = sweep
    return sweep


def _sweep_setting(sweep) -> str:
    st = sweep["steps"]
    return (f"unCLIP (prior {st['prior']}, decoder {st['decoder']} steps; best-of-2 prior sample, guided decoder) vs "
            f"glide_digits ({st['glide']} steps); {sweep['P']} prompts (every class × bold / thin) × {sweep['R']} draws, "
            f"the same captions and noise indices for both; CFG w ∈ {list(SWEEP_W)} (eq. 6; the papers' s = w + 1), "
            f"{DECODE_STEPS} ancestral steps each; class by the digits classifier, bold by ink mass, diversity = mean "
            f"pairwise distance of one prompt's draws in that classifier's features (s.e. over prompts), FID against "
            f"the real training digits in the same features")


def _plot_sweep(ctx, sweep):
    """Diversity and FID against w, and alignment against diversity, both models (error bars ±2 s.e.)."""
    v = sweep["values"]
    path = ctx.figure("unclip_vs_glide")
    with figure(path, 1, 3, figsize=(13, 3.8), title="unCLIP vs GLIDE on captioned digits: guidance sweep (±2 s.e.)") as (_, axes):
        for m, label in (("unclip", "unCLIP (decoder guided)"), ("glide", "GLIDE")):
            div = [v[f"diversity_{m}_{_w(w)}"] for w in SWEEP_W]
            fid = [v[f"fid_{m}_{_w(w)}"] for w in SWEEP_W]
            acc = [v[f"all_acc_{m}_{_w(w)}"] for w in SWEEP_W]
            axes[0].errorbar(SWEEP_W, [y.value for y in div], yerr=[2 * y.se for y in div], marker="o", capsize=3, label=label)
            axes[1].errorbar(SWEEP_W, [y.value for y in fid], yerr=[2 * y.se for y in fid], marker="o", capsize=3, label=label)
            line = axes[2].errorbar([a.value for a in acc], [d.value for d in div], xerr=[2 * a.se for a in acc],
                                    yerr=[2 * d.se for d in div], marker="o", capsize=3, label=label)
            for w, a, d in zip(SWEEP_W, acc, div):
                axes[2].annotate(f"w={w:g}", (a.value, d.value), fontsize=7, xytext=(3, 3), textcoords="offset points")
            mw = sweep["matched"][m]
            if m == "unclip":  # the oracle-prior diagnostic beside unCLIP, in the w panels only
                for ax, key in ((axes[0], "diversity"), (axes[1], "fid")):
                    ys = [v[f"{key}_{ORACLE}_{_w(w)}"] for w in SWEEP_W]
                    ax.errorbar(SWEEP_W, [y.value for y in ys], yerr=[2 * y.se for y in ys], marker="^", ls="--", capsize=3,
                                color="grey", label="unCLIP decoder, real image embeddings (oracle prior)")
            axes[2].scatter([v[f"all_acc_{m}_matched"].value], [v[f"diversity_{m}_matched"].value], s=160, marker="s",
                            facecolors="none", edgecolors=line[0].get_color(), linewidths=1.5, zorder=5,
                            label=f"{label}: matched alignment (w = {mw:g})")
        for ax, xl, yl in ((axes[0], "CFG weight w (s = w + 1)", "diversity (pairwise feature distance, one prompt)"),
                           (axes[1], "CFG weight w (s = w + 1)", "FID (digits features)"),
                           (axes[2], "caption alignment (class and bold/thin)", "diversity")):
            ax.set_xlabel(xl)
            ax.set_ylabel(yl, fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return path


@claim("unclip_diversity_vs_glide", paper="unCLIP", where="§5.2–5.3, Table 1 (diversity), Figs. 9 and 10",
       statement="At matched caption alignment unCLIP's samples of one caption are more diverse than GLIDE's, and "
                 "guidance collapses GLIDE's diversity faster than unCLIP's (whose scene is fixed by the prior's "
                 "CLIP embedding while only the decoder is guided).",
       criteria=[Greater("diversity_unclip_matched", "diversity_glide_matched"),
                 Greater(f"diversity_unclip_{W_MAX}", f"diversity_glide_{W_MAX}"),
                 Less("diversity_drop_unclip", "diversity_drop_glide")],
       shown=("diversity_unclip_matched", "diversity_glide_matched", "all_acc_unclip_matched", "all_acc_glide_matched",
              f"diversity_unclip_{W_MAX}", f"diversity_glide_{W_MAX}", "diversity_drop_unclip", "diversity_drop_glide"))
def unclip_diversity_vs_glide(ctx) -> Result:
    sweep = _sweep(ctx)
    plot = _plot_sweep(ctx, sweep)
    grid = image_rows(sweep["previews"], ctx.figure("unclip_vs_glide_samples"),
                      f"draws of the first prompts ({sweep['R']} per prompt; one noise index per column), unguided and at w = {SWEEP_W[-1]:g}", 20)
    m = sweep["matched"]
    return Result(sweep["values"], _sweep_setting(sweep), [plot, grid],
                  note=f"Matched alignment: A* = {sweep['alignment']:.3f}, the highest joint alignment (class and bold) both "
                       "models reach in the sweep; each model at its least guidance within 2 s.e. of A* (unCLIP w = "
                       f"{m['unclip']:g}, GLIDE w = {m['glide']:g}; all_acc_gap_matched is the remaining difference). "
                       "Alignment and diversity of every scale are in the values and the figure. diversity_drop = "
                       "1 − diversity(w_max) / diversity(w = 0), delta-method s.e. paired by prompt; diversity_lost is the "
                       "absolute difference. Sample counts are per cell; alignment s.e. are binomial over samples. *_oracle_* (in no "
                       "criterion): the same decoder fed CLIP image embeddings of real held-out digits of the prompt's class "
                       "and weight — what a perfect prior would give.")


@claim("unclip_fid_vs_guidance", paper="unCLIP", where="§5.3, Fig. 11 (zero-shot MS-COCO FID against guidance scale)",
       statement="Guidance hurts unCLIP's FID much less than GLIDE's: from unguided to the largest scale, FID rises "
                 "less for unCLIP (decoder guided, prior fixed) than for GLIDE.",
       criteria=[Less("fid_rise_unclip", "fid_rise_glide")],
       shown=(f"fid_unclip_{_w(SWEEP_W[0])}", f"fid_unclip_{W_MAX}", f"fid_glide_{_w(SWEEP_W[0])}", f"fid_glide_{W_MAX}",
              "fid_rise_unclip", "fid_rise_glide"))
def unclip_fid_vs_guidance(ctx) -> Result:
    sweep = _sweep(ctx)
    plot = _plot_sweep(ctx, sweep)
    return Result(sweep["values"], _sweep_setting(sweep), [plot],
                  note=f"FID of {sweep['P'] * sweep['R']} samples per cell (the same n everywhere, so its small-n bias is "
                       "shared); fid_rise = FID(w_max) − FID(w = 0), the two bootstrap s.e. combined as if independent. The "
                       "two models differ in training budget and variance parameterisation, so their unguided FIDs differ; "
                       "the claim is about the rise. *_oracle_*: the decoder on real image embeddings (a perfect prior), in no criterion.")
