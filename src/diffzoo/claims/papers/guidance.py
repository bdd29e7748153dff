"""Claims of the guidance papers, checked on 8×8 digits: ADM's classifier guidance and
classifier-free guidance. Sample ``i`` targets class ``i mod 10``; target accuracy, FID, IS,
precision and recall are measured in the digits classifier's features (:mod:`diffzoo.claims.measure`)."""

from __future__ import annotations

from ..criteria import Greater, Less, Measured
from ..figures import figure, image_rows
from ..measure import draw
from ..registry import Result, claim
from .images import DIGITS_STEPS, SAMPLES, _ddpm_digits

GUIDED_STEPS = 100  # respaced ancestral steps of every guided draw (the guidance sweep's default)
CLASSIFIER_SCALES = (0.0, 1.0, 3.0, 10.0)
CFG_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)


def _tag(x: float) -> str:
    return f"{x:g}"


def _tradeoff_plot(values: dict[str, Measured], scales, prefix: str, label: str, path, title: str):
    """FID against IS and precision / recall / target accuracy against the scale, one point per scale."""
    with figure(path, 1, 2, figsize=(9, 3.6), title=title) as (_, (a, b)):
        fid = [values[f"fid_{prefix}{_tag(s)}"].value for s in scales]
        is_ = [values[f"is_{prefix}{_tag(s)}"].value for s in scales]
        a.plot(is_, fid, marker="o")
        for s, x, y in zip(scales, is_, fid):
            a.annotate(f"{label} = {_tag(s)}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        a.set_xlabel("IS (digits classifier)")
        a.set_ylabel("FID (digits features)")
        a.grid(alpha=0.3)
        for name in ("precision", "recall", "target_accuracy"):
            ys = [values[f"{name}_{prefix}{_tag(s)}"] for s in scales]
            b.errorbar(list(scales), [y.value for y in ys], yerr=[2 * y.se for y in ys], marker="o", capsize=3, label=name)
        b.set_xlabel(label)
        b.set_ylim(0, 1.02)
        b.grid(alpha=0.3)
        b.legend(fontsize=8)
    return path


def _measure_scales(ctx, module, guidance_of, scales, prefix: str, n: int):
    from ...samplers import SamplerSpec

    quality = ctx.quality(module)
    values, previews = {}, {}
    for s in scales:
        samples, labels, _ = draw(module, n, ctx.seed, sampler=SamplerSpec("ddpm", GUIDED_STEPS), guidance=guidance_of(s))
        values.update(quality(samples, labels).as_dict(suffix=f"_{prefix}{_tag(s)}"))
        order = labels[:20].argsort(stable=True)
        previews[f"{prefix} = {_tag(s)}"] = samples[:20][order]
    return values, previews


# ------------------------------------------------------------------------------------------ ADM
@claim("adm_classifier_guidance", paper="ADM", where="§4, Fig. 4 and Table 4 (precision up, recall down as the scale grows)",
       statement="Classifier guidance of an unconditional model makes samples of the target class more often as the "
                 "scale s grows, trading diversity (recall) for fidelity (precision).",
       criteria=[Greater("target_accuracy_s1", "target_accuracy_s0"), Greater("target_accuracy_s10", "target_accuracy_s1"),
                 Greater("precision_s10", "precision_s0"), Less("recall_s10", "recall_s0")],
       shown=("target_accuracy_s0", "target_accuracy_s1", "target_accuracy_s10", "precision_s0", "precision_s10",
              "recall_s0", "recall_s10"))
def adm_classifier_guidance(ctx) -> Result:
    from ...lit import load_classifier_guidance

    base = _ddpm_digits(ctx)
    classifier = ctx.trained("adm_classifier_digits", ctx.budget(*DIGITS_STEPS))
    module = base.load()
    n = ctx.budget(SAMPLES, 24)
    values, previews = _measure_scales(ctx, module, lambda s: load_classifier_guidance(str(classifier.ckpt), scale=s),
                                       CLASSIFIER_SCALES, "s", n)
    plot = _tradeoff_plot(values, CLASSIFIER_SCALES, "s", "s", ctx.figure("adm_guidance"),
                          "Classifier guidance of the unconditional digits DDPM")
    grid = image_rows(previews, ctx.figure("adm_guidance_samples"), "classifier guidance: samples by scale (sorted by target class)", 20)
    return Result(values, f"experiment=ddpm_digits ({base.steps} steps) guided by adm_classifier_digits ({classifier.steps} steps); "
                          f"{n} samples per scale, {GUIDED_STEPS} respaced ancestral steps, ε-form guidance", [plot, grid],
                  note="target accuracy, precision and recall: binomial s.e.; precision/recall with k = 3 "
                       "(Kynkäänniemi et al. 2019) against the training digits.")


# ------------------------------------------------------------------------------------------ CFG
@claim("cfg_tradeoff", paper="CFG", where="§4.1, Fig. 4 and Table 1 (best FID at small w, IS rising with w)",
       statement="Raising the guidance weight w of a jointly trained conditional/unconditional model trades diversity "
                 "for fidelity: IS and precision rise, recall falls, and FID is best at a small w and worse at a large one.",
       criteria=[Greater("is_w4", "is_w0"), Greater("precision_w4", "precision_w0"), Less("recall_w4", "recall_w0"),
                 Greater("fid_w4", "fid_best_small_w")],
       shown=("is_w0", "is_w4", "fid_w0", "fid_best_small_w", "fid_w4", "precision_w4", "recall_w4"))
def cfg_tradeoff(ctx) -> Result:
    from ...guidance import ClassifierFreeGuidance

    run = ctx.trained("cfg_digits", ctx.budget(*DIGITS_STEPS))
    module = run.load()
    n = ctx.budget(SAMPLES, 24)
    values, previews = _measure_scales(ctx, module, lambda w: ClassifierFreeGuidance(scale=w), CFG_WEIGHTS, "w", n)
    small = [w for w in CFG_WEIGHTS if w <= 1.0]
    best = min(small, key=lambda w: values[f"fid_w{_tag(w)}"].value)
    values["fid_best_small_w"] = values[f"fid_w{_tag(best)}"]
    plot = _tradeoff_plot(values, CFG_WEIGHTS, "w", "w", ctx.figure("cfg_tradeoff"), "Classifier-free guidance on digits")
    grid = image_rows(previews, ctx.figure("cfg_samples"), "classifier-free guidance: samples by weight (sorted by target class)", 20)
    return Result(values, f"experiment=cfg_digits, {run.steps} steps (label dropped 20 %); {n} samples per weight, "
                          f"{GUIDED_STEPS} respaced ancestral steps", [plot, grid],
                  note=f"fid_best_small_w is the lowest FID over w ≤ 1 (here w = {_tag(best)}).")
