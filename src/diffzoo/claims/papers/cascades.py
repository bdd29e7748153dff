"""Claims of the cascade papers (CDM, Ho, Saharia et al. 2021; Imagen's noise conditioning augmentation),
checked on the Fashion-MNIST cascade 8 → 16 (experiments ``cdm_fashion_mnist_base8`` / ``_sr16``) and on an
exact-score Gaussian mixture.

Sample quality of the 16×16 outputs is FID in the features of a classifier trained on the 16×16 data
(:meth:`~diffzoo.claims.context.Context.quality`) and CAS (Ravuri & Vinyals 2019) on the real held-out set.
"""

from __future__ import annotations

import math

import torch

from ..criteria import Greater, Less, Measured, Within
from ..registry import Result, claim

BASE_STEPS = (2000, 30)   # cdm_fashion_mnist_base8's own budget (full, quick)
SR_STEPS = (1500, 30)     # cdm_fashion_mnist_sr16's own budget
SAMPLES = (1000, 20)      # cascade samples per setting
SAMPLER_STEPS = (250, 4)  # ancestral steps of every stage
LEVELS = (0.0, 0.1, 0.2, 0.3, 0.5)  # sampling augmentation levels swept (CDM's post-training search, §3.2)
S_STAR = 0.2              # the level the criteria compare, fixed before the run (CDM / Imagen use 0.1-0.3)


def _super_resolve(module, low: torch.Tensor, seed: int, level: float, sampler, labels: torch.Tensor | None = None,
                   captions: list[str] | None = None, batch: int = 250) -> torch.Tensor:
    """``module``'s super-resolutions of ``low`` ``[n, C, h, w]`` at augmentation level ``level``, drawn in batches
    (sample ``i`` from ``(seed, i)``), clipped to ``[−1, 1]``, on the CPU; ``labels`` / ``captions`` per sample."""
    from ...lit.super_resolution import upsample_indices

    n = len(low)
    xs = [upsample_indices(module, low[i:i + batch], range(i, min(n, i + batch)), seed,
                           labels=None if labels is None else labels[i:i + batch], aug_level=level, sampler=sampler,
                           cond=None if captions is None else {"text": captions[i:i + batch]}).x
          for i in range(0, n, batch)]
    return torch.cat(xs).clamp(-1, 1).cpu()


def _cascade_values(ctx, base, sr, low, labels, level: float, tag: str, n: int) -> dict[str, Measured]:
    """FID and CAS of ``sr`` super-resolving ``low`` ``[n, 1, 8, 8]`` at ``level``."""
    from ...metrics.cas import classification_accuracy_score
    from ...metrics.data import build_datamodule, load_split
    from ...samplers import SamplerSpec
    from ...utils.images import to_uint8

    spec = SamplerSpec("ddpm", steps=ctx.budget(*SAMPLER_STEPS))
    x = _super_resolve(sr, low, ctx.seed, level, spec, labels=labels)
    q = ctx.quality(sr)(x, labels)
    dm = build_datamodule(sr.run_config["data"])
    test = load_split(dm, "val", ctx.budget(None, 500))
    cas = classification_accuracy_score(to_uint8(x), labels, test.x, test.y, 10, epochs=ctx.budget(10, 1), seed=ctx.seed)
    return {f"fid_{tag}": q.fid, f"cas_{tag}": Measured(cas.cas, math.sqrt(max(cas.cas * (1 - cas.cas), 1e-12) / cas.n_test))}


@claim("cdm_conditioning_augmentation", paper="CDM", where="abstract, §3.1–3.2; Imagen §2.4, App. D.2 (Fig. A.11)",
       statement="Conditioning augmentation is crucial for a cascade: with base-model samples as the low-resolution "
                 f"input, the 8→16 stage sampled at level s = {S_STAR} beats the same stage at s = 0 and a stage trained "
                 "without augmentation (FID, CAS); with ground-truth low-resolution inputs, s = 0 beats "
                 f"s = {S_STAR} (the train–test mismatch argument).",
       criteria=[Less(f"fid_base_s{S_STAR}", "fid_base_s0.0"), Less(f"fid_base_s{S_STAR}", "fid_base_noaug"),
                 Less("cas_base_s0.0", f"cas_base_s{S_STAR}"), Less("fid_truth_s0.0", f"fid_truth_s{S_STAR}")],
       shown=(f"fid_base_s{S_STAR}", "fid_base_s0.0", "fid_base_noaug", f"cas_base_s{S_STAR}", "cas_base_s0.0",
              "fid_truth_s0.0", f"fid_truth_s{S_STAR}"))
def cdm_conditioning_augmentation(ctx) -> Result:
    from ...data.downsampled import area_downsample
    from ...metrics.data import build_datamodule
    from ...samplers import SamplerSpec, sample_indices

    base = ctx.trained("cdm_fashion_mnist_base8", ctx.budget(*BASE_STEPS)).load()
    sr = ctx.trained("cdm_fashion_mnist_sr16", ctx.budget(*SR_STEPS)).load()
    noaug = ctx.trained("cdm_fashion_mnist_sr16", ctx.budget(*SR_STEPS), "model.augmentation.noise=null").load()
    n = ctx.budget(*SAMPLES)
    labels = torch.arange(n) % 10
    spec = SamplerSpec("ddpm", steps=ctx.budget(*SAMPLER_STEPS))
    low = torch.cat([sample_indices(base.denoiser(), spec, range(i, min(n, i + 250)), ctx.seed, base.data_shape,
                                    labels=labels[i:i + 250]).x for i in range(0, n, 250)]).clamp(-1, 1)
    dm = build_datamodule(sr.run_config["data"])
    held = dm.val_set.__getitems__(list(range(n)))  # the first n held-out 16x16 images and their labels
    truth_low, truth_y = area_downsample(held["x"], 8), held["y"]
    values: dict[str, Measured] = {}
    levels = LEVELS if not ctx.quick else (0.0, S_STAR)
    for s in levels:
        values.update(_cascade_values(ctx, base, sr, low, labels, s, f"base_s{s}", n))
        values.update(_cascade_values(ctx, base, sr, truth_low, truth_y, s, f"truth_s{s}", n))
    values.update(_cascade_values(ctx, base, noaug, low, labels, 0.0, "base_noaug", n))
    setting = (f"Fashion-MNIST 8→16 (area-downsampled), base {ctx.budget(*BASE_STEPS)} and SR {ctx.budget(*SR_STEPS)} steps, "
               f"{n} cascade samples per level, {ctx.budget(*SAMPLER_STEPS)} ancestral steps per stage, levels {list(levels)}")
    return Result(values, setting, note="the SR stage was trained with non-truncated noise augmentation, s ~ U[0, 0.5], "
                                        "P(s = 0) = 0.2; the no-augmentation stage is the same recipe with noise=null")


@claim("cdm_truncated_equals_non_truncated", paper="CDM", where="§3.2 (truncated vs non-truncated augmentation)",
       statement="With an exact low-resolution model, truncated augmentation (stop the reverse chain at s, pass z_s) "
                 "and non-truncated augmentation (sample z_0, corrupt it to z_s) give the SR stage the same q(z_s).",
       criteria=[Within("mean_truncated_minus_closed_form", 0.0, 0.01), Within("mean_non_truncated_minus_closed_form", 0.0, 0.01),
                 Within("var_truncated_minus_closed_form", 0.0, 0.01), Within("var_non_truncated_minus_closed_form", 0.0, 0.01)])
def cdm_truncated_equals_non_truncated(ctx) -> Result:
    from ...data.gaussian_mixture import GaussianMixture
    from ...denoisers import mixture_denoiser
    from ...objectives.conditioning_augmentation import GaussianNoiseAugmentation
    from ...samplers import ddpm
    from ...samplers.truncated import ancestral_until
    from ...schedules import DiscreteSchedule, linear_betas

    # full: DDPM's table (T = 1000, β to 0.02), s = 1/3; quick: a 200-step table (β to 0.1), the same s.
    # 10⁶ chains: at 10⁵ the variance s.e. (0.0044) was too wide to place |Δvar| against the 0.01 tolerance
    T, beta_end, N = ctx.budget(1000, 200), ctx.budget(0.02, 0.1), ctx.budget(1_000_000, 5_000)
    k = (T - 1) // 3
    schedule = DiscreteSchedule(linear_betas(T, 1e-4, beta_end))
    w, mu, sd = torch.tensor([0.3, 0.7], dtype=torch.float64), torch.tensor([-1.0, 1.0], dtype=torch.float64), torch.tensor([0.2, 0.3], dtype=torch.float64)
    den = mixture_denoiser(GaussianMixture(w, mu[:, None], sd), schedule, conditional=False)
    alpha, sigma = float(schedule.sqrt_alphas_cumprod[k]), float(schedule.sqrt_one_minus_alphas_cumprod[k])
    mean = float((w * alpha * mu).sum())  # q(z_s) = Σ π_k N(α μ_k, α² s_k² + σ²)
    var = float((w * (alpha**2 * sd**2 + sigma**2 + (alpha * mu) ** 2)).sum()) - mean**2
    x_T = torch.randn(N, 1, generator=torch.Generator().manual_seed(ctx.seed), dtype=torch.float64)
    trunc = ancestral_until(den, x_T, float(k), clip_x0=False, generator=torch.Generator().manual_seed(ctx.seed + 1)).flatten()
    z0 = ddpm(den, x_T, variance="fixedsmall", clip_x0=False, generator=torch.Generator().manual_seed(ctx.seed + 2))
    full = GaussianNoiseAugmentation(schedule).sample(z0, level=k / (T - 1), generator=torch.Generator().manual_seed(ctx.seed + 3))
    non = full.low_res.flatten()
    values = {}
    for tag, z in (("truncated", trunc), ("non_truncated", non)):
        values[f"mean_{tag}_minus_closed_form"] = Measured(float(z.mean()) - mean, math.sqrt(var / N))
        values[f"var_{tag}_minus_closed_form"] = Measured(float(z.var()) - var, var * math.sqrt(2 / N))
    return Result(values, f"a 1-D two-component Gaussian mixture, its exact score, a {T}-step linear β table (to {beta_end}), "
                          f"level s = {k}/{T - 1}, {N} chains each")


# Imagen App. D.2 / Fig. A.11 on the 8 → 16 text cascade (experiments imagen_fashion_mnist_base8 / _sr16)
TEXT_BASE_STEPS = (3000, 30)    # imagen_fashion_mnist_base8's own budget (full, quick)
TEXT_SR_STEPS = (1500, 30)      # imagen_fashion_mnist_sr16's own budget
TEXT_SAMPLES = (500, 20)        # cascade samples per sampling level
TEXT_SAMPLER_STEPS = (100, 4)   # respaced ancestral steps of each stage
TEXT_PROMPTS = 20               # training-register prompts, sample i gets prompt i mod 20
TEXT_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.5)  # App. D.2 sweeps the sampling level (Fig. A.11: 0 to 0.5 and beyond)


@claim("imagen_noise_augmentation", paper="Imagen", where="§2.4, App. D.2, Fig. A.11",
       statement="Noise conditioning augmentation improves the text cascade: the super-resolution stage trained with it and "
                 f"sampled at level {S_STAR} gives better FID and caption alignment on the base model's samples than the same "
                 "stage trained without augmentation, and than itself at level 0.",
       criteria=[Less(f"fid_s{S_STAR}", "fid_noaug"), Less(f"fid_s{S_STAR}", "fid_s0.0"),
                 Greater(f"class_acc_s{S_STAR}", "class_acc_noaug")],
       shown=(f"fid_s{S_STAR}", "fid_s0.0", "fid_noaug", f"class_acc_s{S_STAR}", "class_acc_s0.0", "class_acc_noaug"))
def imagen_noise_augmentation(ctx) -> Result:
    from hydra.utils import instantiate

    from ...samplers import SamplerSpec
    from ..figures import figure, image_rows
    from .text_to_image import draw_prompted

    base = ctx.trained("imagen_fashion_mnist_base8", ctx.budget(*TEXT_BASE_STEPS)).load()
    sr = ctx.trained("imagen_fashion_mnist_sr16", ctx.budget(*TEXT_SR_STEPS)).load()
    noaug = ctx.trained("imagen_fashion_mnist_sr16", ctx.budget(*TEXT_SR_STEPS), "model.augmentation.noise=null").load()
    n, steps = ctx.budget(*TEXT_SAMPLES), ctx.budget(*TEXT_SAMPLER_STEPS)
    spec = SamplerSpec("ddpm", steps=steps)
    prompts = instantiate(base.run_config["data"]).data.prompts("train", TEXT_PROMPTS, ctx.seed)  # the wrapped captioned set
    low, attrs = draw_prompted(base, prompts, n, ctx.seed, spec)
    low, labels = low.clamp(-1, 1), attrs["class"]
    captions = [prompts.text[i % len(prompts)] for i in range(n)]
    quality = ctx.quality(sr)

    values: dict[str, Measured] = {}
    previews = {}
    levels = TEXT_LEVELS if not ctx.quick else (0.0, S_STAR)
    for tag, module, level in [*((f"s{s}", sr, s) for s in levels), ("noaug", noaug, 0.0)]:
        x = _super_resolve(module, low, ctx.seed, level, spec, captions=captions)
        q = quality(x, labels)
        values[f"fid_{tag}"], values[f"class_acc_{tag}"] = q.fid, q.target_accuracy
        if tag in ("s0.0", f"s{S_STAR}", "noaug"):
            previews[{"noaug": "trained without augmentation", "s0.0": "augmented, sampled at 0"}.get(tag, f"augmented, sampled at {level}")] = x[:20]
    plot = ctx.figure("imagen_noise_augmentation")
    with figure(plot, 1, 2, figsize=(9, 3.4), title="Noise conditioning augmentation of the 8→16 text stage (Fashion-MNIST)") as (_, axes):
        for ax, key, label in zip(axes, ("fid", "class_acc"), ("FID (16×16 classifier features)", "caption class read from pixels")):
            ys = [values[f"{key}_s{s}"] for s in levels]
            ax.errorbar(levels, [y.value for y in ys], yerr=[2 * y.se for y in ys], marker="o", capsize=3, label="trained with augmentation")
            ref = values[f"{key}_noaug"]
            ax.axhline(ref.value, color="grey", ls="--", label="trained without (level 0)")
            ax.set_xlabel("sampling augmentation level s")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
    grid = image_rows({"base 8×8": low[:20], **previews}, ctx.figure("imagen_noise_augmentation_samples"),
                      "one base sample per column, then its 16×16 super-resolutions", 20)
    setting = (f"captioned Fashion-MNIST 8→16 (2×2 block means), base {ctx.budget(*TEXT_BASE_STEPS)} and SR "
               f"{ctx.budget(*TEXT_SR_STEPS)} steps (frozen MiniLM, cross-attention), {n} cascade samples per level over "
               f"{TEXT_PROMPTS} training prompts, {steps} ancestral steps per stage, no guidance, levels {list(levels)}")
    return Result(values, setting, [plot, grid],
                  note="the augmented stage was trained with non-truncated Gaussian noise at a level ~ U[0, 1] (Imagen §2.4); "
                       "class_acc = the caption's class read from the 16×16 samples by the data set's feature classifier.")
