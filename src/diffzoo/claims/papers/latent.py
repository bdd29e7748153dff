"""Claims of Latent Diffusion (Rombach et al. 2022), checked on Fashion-MNIST area-downsampled to 16×16.

Every model is an experiment of the project, trained by :meth:`Context.trained` with the same overrides
wherever two claims share it (so the runs are reused by config hash):

* first stages: ``ae_kl_f4_fashion_mnist`` at 16×16 (f = 4 → 4×4×3 latents) and its f = 2 variant
  (``net.ch_mult=[1,1]``, 8×8×2), the two-layer PatchGAN (three layers need ≥ 32 px);
* diffusion: ``ldm_f1_fashion_mnist`` (pixels, f = 1) and ``ldm_kl_f4_fashion_mnist`` (``+ldm_f=f2`` for
  f = 2), the same digits-size U-Net at every f (LDM §4.1 compares at equal parameters and steps), its
  input size set to 16 / f.

The data is 16×16 (Fashion-MNIST padded to 32, then 2×2 block means; ``data=fashion_mnist_area``)
because 32×32 pixel diffusion costs ~5× more per step on 2 CPU cores. FID is in the features of the
16×16 data set's own classifier (:mod:`diffzoo.claims.measure`), against the training images; the
autoencoders' rFID is the same statistic of the reconstructions of held-out images, so a model's FID and
its first stage's rFID are comparable (the rFID is the floor a perfect latent model reaches).
"""

from __future__ import annotations

import csv
import math
import time

import torch

from ..criteria import Greater, Less, Measured, Within
from ..figures import figure, image_rows
from ..measure import draw, mean_se
from ..registry import Result, claim

# 16x16 Fashion-MNIST (the 28x28 images padded to 32, then 2x2 block means), batch 64 for every run
DATA = ("data=fashion_mnist_area", "data.resolution=16", "~data.image_size", "data.batch_size=64")
AE_STEPS = (1500, 20)        # first-stage training steps (full, quick): ae_kl_f4_fashion_mnist's own 1500
LDM_STEPS = (5000, 20)       # diffusion training steps, the same at every f (LDM Fig. 6: equal steps)
SAMPLES = (1000, 40)         # samples (and completed images, reconstructions) per FID
DDIM_STEPS = (50, 4)         # DDIM steps, eta = 1 (LDM scripts/sample_diffusion.py defaults)
TIMING_REPS = (5, 2)         # interleaved repetitions of the side-by-side timings
TIMING_BATCH = (250, 8)      # samples per timed sampling batch
TRAIN_TIMING_STEPS = 3       # optimizer steps per timed training repetition
THREADS = 1                  # torch threads of every claim here: on a shared 2-core machine two threads oversubscribe
                             # and a step ran 2-10x slower than with one (measured); one thread is also what the budgets assume
FACTORS = (1, 2, 4)          # f = 8 would leave 2x2 latents at 16x16, smaller than the U-Net's three levels

# first-stage overrides per f (ae_kl_f4_fashion_mnist at 16x16); f = 1 has none (pixel space)
AE_COMMON = ("net.resolution=16", "objective.disc_num_layers=2", "callbacks.reconstruction=null")
AE_F = {2: ("net.ch_mult=[1,1]", "net.z_channels=2", "net.embed_dim=2"), 4: ()}
# the U-Net's input side and attention resolution per f (16 / f; attention one level down, as the experiments)
NET_F = {1: ("net.image_size=16", "net.attention_resolutions=[8]"), 2: ("net.image_size=8", "net.attention_resolutions=[4]"),
         4: ("net.image_size=4", "net.attention_resolutions=[2]")}


def _autoencoder(ctx, f: int):
    """The KL first stage with downsampling factor ``f`` at 16×16 (trained or reused)."""
    return ctx.trained("ae_kl_f4_fashion_mnist", ctx.budget(*AE_STEPS), *DATA, *AE_COMMON, *AE_F[f])


def _ldm(ctx, f: int, *extra: str):
    """The LDM with downsampling factor ``f`` (f = 1: pixel space), same U-Net and steps at every f."""
    if f == 1:
        return ctx.trained("ldm_f1_fashion_mnist", ctx.budget(*LDM_STEPS), *DATA, *NET_F[1], *extra)
    ae = _autoencoder(ctx, f)
    group = ("+ldm_f=f2",) if f == 2 else ()
    return ctx.trained("ldm_kl_f4_fashion_mnist", ctx.budget(*LDM_STEPS), *DATA, *group, f"first_stage.ckpt_path={ae.ckpt}",
                       *NET_F[f], *extra)


def _ratio(a: Measured, b: Measured) -> Measured:
    """``a / b`` with the first-order (delta-method) standard error of independent ``a`` and ``b``."""
    r = a.value / b.value
    return Measured(r, abs(r) * math.hypot(a.se / a.value, b.se / b.value))


def _held_out(module, n: int) -> torch.Tensor:
    """The first ``n`` held-out images of the module's data ``[n, C, H, W]`` in ``[−1, 1]``."""
    from ...metrics.data import build_datamodule

    dm = build_datamodule(module.run_config["data"])
    return dm.val_set.__getitems__(list(range(n)))["x"].float()


def _train_seconds_logged(run) -> Measured | None:
    """Total training time of ``run`` from its log (``train/step_ms`` + ``train/data_wait_ms``, the
    Throughput callback's window means, × steps); ``None`` without a log."""
    path = run.run_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return None
    with open(path) as fh:
        per_step = [(float(r["train/step_ms"]) + float(r.get("train/data_wait_ms") or 0.0)) / 1000.0
                    for r in csv.DictReader(fh) if r.get("train/step_ms")]
    if not per_step:
        return None
    m = mean_se(per_step)
    return Measured(m.value * run.steps, m.se * run.steps)


def _train_step_seconds(ctx, runs: dict, x: torch.Tensor) -> dict:
    """Seconds per training step of each run, measured side by side: fresh copies of the trained modules,
    one batch ``x`` of images, ``TRAIN_TIMING_STEPS`` steps (encode for latent models, the objective,
    backward, Adam) per model per repetition, the models interleaved so that a busy machine slows all alike."""
    mods = {}
    for key, run in runs.items():
        m = run.load().train()
        mods[key] = (m, torch.optim.Adam([p for p in m.net.parameters() if p.requires_grad], lr=1e-5))

    def step(m, opt):
        z = m.encode(x)  # s * E(x): the latent model's extra cost (LDM get_first_stage_encoding); f = 1: x itself
        loss = m.objective(m.net, m.schedule, z).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times: dict = {k: [] for k in runs}
    with torch.random.fork_rng():  # the training noise drawn here leaves the global RNG as it was
        for rep in range(ctx.budget(*TIMING_REPS) + 1):
            for key, (m, opt) in mods.items():
                t0 = time.perf_counter()
                for _ in range(TRAIN_TIMING_STEPS):
                    step(m, opt)
                if rep > 0:  # the first repetition warms up
                    times[key].append((time.perf_counter() - t0) / TRAIN_TIMING_STEPS)
    return {k: mean_se(v) for k, v in times.items()}


def _samples_per_second(ctx, modules: dict, sample_fn) -> dict:
    """Samples per second of each module through ``sample_fn(module, b)``, measured side by side
    (interleaved repetitions of ``TIMING_BATCH`` samples, after one warm-up batch each)."""
    b = ctx.budget(*TIMING_BATCH)
    rates: dict = {k: [] for k in modules}
    for rep in range(ctx.budget(*TIMING_REPS) + 1):
        for key, m in modules.items():
            t0 = time.perf_counter()
            sample_fn(m, b)
            if rep > 0:
                rates[key].append(b / (time.perf_counter() - t0))
    return {k: mean_se(v) for k, v in rates.items()}


def _ddim(ctx):
    from ...samplers import SamplerSpec

    return SamplerSpec("ddim", steps=ctx.budget(*DDIM_STEPS), eta=1.0)


def _reconstructions(module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """``D(E(x))`` through the LDM's frozen first stage (the scale cancels), in batches; the KL posterior
    samples are drawn from ``seed`` (the global RNG is left as it was)."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.cat([module.decode(module.encode(c)) for c in x.split(250)]).clamp(-1, 1)


@claim("ldm_downsampling_factor", paper="LDM", where="§4.1, Fig. 6–7 (LDM-{1, 2, 4} at equal steps)",
       statement="Latent models with f = 4 and f = 2 reach a lower FID than pixel-space diffusion (f = 1) at equal "
                 "training steps, each of their training steps is cheaper (so equal wall-clock favours them further), "
                 "and f = 4 samples several times faster; the first stage's rFID is the floor of a latent model's FID "
                 "and grows with f.",
       criteria=[Less("fid_f4", "fid_f1"), Less("fid_f2", "fid_f1"),
                 Less("train_step_s_f4", "train_step_s_f1"), Less("train_step_s_f2", "train_step_s_f1"),
                 Greater("sample_speedup_f4", 2.0),  # "several times": at least 2x (Fig. 7 gives no number)
                 Greater("fid_f4", "rfid_f4"), Greater("fid_f2", "rfid_f2"), Less("rfid_f2", "rfid_f4")],
       shown=("fid_f1", "fid_f2", "fid_f4", "rfid_f2", "rfid_f4", "train_step_cost_f1_over_f4", "sample_speedup_f4",
              "sample_speedup_f2"))
def ldm_downsampling_factor(ctx) -> Result:
    with ctx.threads(THREADS):
        return _ldm_downsampling_factor(ctx)


def _ldm_downsampling_factor(ctx) -> Result:
    runs = {f: _ldm(ctx, f) for f in FACTORS}
    mods = {f: runs[f].load() for f in FACTORS}
    quality = ctx.quality(mods[1])
    n = ctx.budget(*SAMPLES)
    spec = _ddim(ctx)
    values, previews = {}, {}
    for f in FACTORS:
        x, _, nfe = draw(mods[f], n, ctx.seed, sampler=spec)
        values[f"fid_f{f}"] = quality(x.clamp(-1, 1)).fid
        previews[f"f = {f}"] = x[:16].clamp(-1, 1)
        logged = _train_seconds_logged(runs[f])
        if logged is not None:
            values[f"train_s_logged_f{f}"] = logged
    real = _held_out(mods[1], n)
    values["fid_real"] = quality(real).fid  # held-out images themselves: the floor at this n
    previews["held-out"] = real[:16]
    for f in FACTORS[1:]:
        rec = _reconstructions(mods[f], real, ctx.seed)
        values[f"rfid_f{f}"] = quality(rec).fid
        previews[f"f = {f} reconstructions"] = rec[:16]
    # speed, side by side: training steps on one batch of 64 held-out images, then DDIM sampling
    step_s = _train_step_seconds(ctx, runs, real[:64] if n >= 64 else real)
    for f in FACTORS:
        values[f"train_step_s_f{f}"] = step_s[f]
    values["train_step_cost_f1_over_f4"] = _ratio(step_s[1], step_s[4])
    values["train_step_cost_f1_over_f2"] = _ratio(step_s[1], step_s[2])
    rates = _samples_per_second(ctx, mods, lambda m, b: draw(m, b, ctx.seed, batch_size=b, sampler=spec))
    for f in FACTORS:
        values[f"samples_per_s_f{f}"] = rates[f]
    values["sample_speedup_f4"] = _ratio(rates[4], rates[1])
    values["sample_speedup_f2"] = _ratio(rates[2], rates[1])

    plot = ctx.figure("ldm_downsampling_factor")
    with figure(plot, 1, 2, figsize=(9, 3.6), title="LDM-f on 16×16 Fashion-MNIST at equal steps") as (_, (ax, bx)):
        fs = list(FACTORS)
        fid = [values[f"fid_f{f}"] for f in fs]
        ax.errorbar(fs, [v.value for v in fid], yerr=[2 * v.se for v in fid], marker="o", capsize=3, label="LDM FID")
        rf = [values[f"rfid_f{f}"] for f in fs[1:]]
        ax.errorbar(fs[1:], [v.value for v in rf], yerr=[2 * v.se for v in rf], marker="s", capsize=3, label="first stage rFID")
        ax.axhline(values["fid_real"].value, color="grey", ls="--", lw=1, label="held-out images")
        ax.set_xscale("log", base=2)
        ax.set_xticks(fs, [str(f) for f in fs])
        ax.set_xlabel("downsampling factor f")
        ax.set_ylabel("FID (Fashion-MNIST-16 classifier features)")
        ax.legend(fontsize=8)
        sps = [values[f"samples_per_s_f{f}"] for f in fs]
        bx.errorbar([v.value for v in sps], [v.value for v in fid], xerr=[2 * v.se for v in sps],
                    yerr=[2 * v.se for v in fid], fmt="o", capsize=3)
        for f, s, v in zip(fs, sps, fid):
            bx.annotate(f"f = {f}", (s.value, v.value), textcoords="offset points", xytext=(5, 5), fontsize=8)
        bx.set_xlabel(f"samples / s (DDIM {spec.steps} steps, incl. decoding)")
        bx.set_ylabel("FID")
        for a in (ax, bx):
            a.grid(alpha=0.3)
    grid = image_rows(previews, ctx.figure("ldm_downsampling_factor_samples"), "samples of LDM-f and reconstructions", 16)
    setting = (f"Fashion-MNIST area-downsampled to 16×16; KL first stages f = 2 (8×8×2) and f = 4 (4×4×3), "
               f"{ctx.budget(*AE_STEPS)} steps at batch 64; the digits-size U-Net (1.1M parameters) at every f, "
               f"{runs[1].steps} steps at batch 64; {n} samples per FID, DDIM {spec.steps} steps η = 1; rFID of {n} "
               f"held-out reconstructions; step times and samples/s measured side by side in one process "
               f"({ctx.budget(*TIMING_REPS)} interleaved repetitions)")
    note = ("Equal wall-clock is argued by equal steps plus a measured step cost: every f trains the same number of "
            "steps (as LDM Fig. 6), and train_step_s_f* (encode + loss + backward + Adam on one batch, the models "
            "interleaved) shows the latent step is cheaper, so at equal wall-clock the latent models would train "
            "even longer (assuming FID does not rise with training). train_s_logged_f* are the runs' own training "
            "times from their logs (another load on the machine inflates them alike only if it lasted throughout). "
            "The first stages' perceptual loss is the offline random-feature stand-in for LPIPS.")
    return Result(values, setting, [plot, grid], note=note)


@claim("ldm_latent_rescaling", paper="LDM", where="App. D.1 (SNR of the latent space, Fig. 16) and App. G (scale_by_std)",
       statement="Without rescaling, diffusion on raw KL latents (std far from 1) is worse at the same steps than on "
                 "latents rescaled by 1/std from the first batch, which brings their std to ≈ 1.",
       criteria=[Less("fid_scaled", "fid_raw"), Within("scaled_latent_std", 1.0, 0.1)],
       shown=("fid_scaled", "fid_raw", "raw_latent_std", "scaled_latent_std", "scale_factor"))
def ldm_latent_rescaling(ctx) -> Result:
    with ctx.threads(THREADS):
        return _ldm_latent_rescaling(ctx)


def _ldm_latent_rescaling(ctx) -> Result:
    scaled_run = _ldm(ctx, 4)  # latent_scaling=auto -> std for a KL first stage: the run of ldm_downsampling_factor
    raw_run = _ldm(ctx, 4, "model.latent_scaling=none")
    scaled, raw = scaled_run.load(), raw_run.load()
    if scaled.latent_scaling != "std" or raw.latent_scaling != "none":
        raise RuntimeError(f"expected std vs none latent scaling, got {scaled.latent_scaling} vs {raw.latent_scaling}")
    quality = ctx.quality(scaled)
    n = ctx.budget(*SAMPLES)
    spec = _ddim(ctx)
    values, previews = {}, {}
    for name, m in (("scaled", scaled), ("raw", raw)):
        x, _, _ = draw(m, n, ctx.seed, sampler=spec)
        values[f"fid_{name}"] = quality(x.clamp(-1, 1)).fid
        previews["1/std rescaled" if name == "scaled" else "raw latents"] = x[:16].clamp(-1, 1)
    held = _held_out(scaled, n)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(ctx.seed)
        z = torch.cat([scaled.first_stage.encode(c) for c in held.split(250)])  # raw E(x) (a KL posterior sample)
    s = float(scaled.scale_factor)
    # the s.e. of a std over N elements of roughly Gaussian values is std / sqrt(2N); the elements of one
    # image are correlated, so N counts images (conservative)
    raw_std = float(z.std())
    values["raw_latent_std"] = Measured(raw_std, raw_std / math.sqrt(2 * n))
    values["scaled_latent_std"] = Measured(s * raw_std, s * raw_std / math.sqrt(2 * n))
    values["scale_factor"] = Measured(s)
    grid = image_rows(previews, ctx.figure("ldm_latent_rescaling_samples"), "LDM-4 samples: rescaled vs raw KL latents", 16)
    setting = (f"16×16 Fashion-MNIST, the KL f = 4 first stage and U-Net of ldm_downsampling_factor, {scaled_run.steps} "
               f"steps each with model.latent_scaling=std (s = 1/std of the first training batch) and =none (s = 1); "
               f"{n} samples per FID, DDIM {spec.steps} steps η = 1; latent std over {n} held-out images")
    return Result(values, setting, [grid],
                  note="the rescaled run is the f = 4 run of ldm_downsampling_factor (reused by config hash); the raw "
                       "latents' std depends on the KL weight (1e-6) and the first stage's training")


INPAINT_BOX = (0.4, 0.6)    # erased rectangle's sides as fractions of the image side


@claim("ldm_latent_inpainting", paper="LDM", where="§4.5, Table 6 (inpainting efficiency, LDM-1 vs LDM-4)",
       statement="Inpainting in latent space (f = 4) is at least 2.7× faster than in pixel space (f = 1) and gives a "
                 "better FID of the completed images.",
       criteria=[Greater("inpaint_speedup_f4", 2.7), Less("inpaint_fid_f4", "inpaint_fid_f1")],
       shown=("inpaint_fid_f1", "inpaint_fid_f4", "inpaint_fid_ratio_f1_over_f4", "inpaint_speedup_f4",
              "inpaint_samples_per_s_f1", "inpaint_samples_per_s_f4"))
def ldm_latent_inpainting(ctx) -> Result:
    with ctx.threads(THREADS):
        return _ldm_latent_inpainting(ctx)


def _ldm_latent_inpainting(ctx) -> Result:
    from ...lit.inpainting import random_box_masks
    from ...samplers import replace_inpaint_images

    mods = {f: _ldm(ctx, f).load() for f in (1, 4)}
    quality = ctx.quality(mods[1])
    n = ctx.budget(*SAMPLES)
    steps = ctx.budget(*DDIM_STEPS)
    x0 = _held_out(mods[1], n)
    mask = random_box_masks(n, x0.shape[2], x0.shape[3], *INPAINT_BOX, torch.Generator().manual_seed(ctx.seed))

    def complete(m, images, masks, seed):
        """Replacement inpainting in the model's own coordinates (z for f = 4, pixels for f = 1), ancestral
        steps with the posterior variance: DDIM with η = 1 on the same respaced grid (DDIM eq. 16)."""
        den = m.denoiser(True)
        gen = torch.Generator().manual_seed(seed)
        x_T = den.process.prior_sample((images.shape[0], *den.model_shape), gen)
        with torch.random.fork_rng():  # the KL encoder's posterior sample (global RNG), seeded too
            torch.manual_seed(seed)
            return replace_inpaint_images(den, x_T, images, masks, steps=steps, generator=gen, variance="fixedsmall",
                                          clip_x0=False).clamp(-1, 1)

    values, previews = {}, {"erased": x0[:16] * mask[:16]}  # erased pixels grey (0): the background is black
    for f, m in mods.items():
        out = torch.cat([complete(m, x0[i:i + 250], mask[i:i + 250], ctx.seed + i) for i in range(0, n, 250)])
        values[f"inpaint_fid_f{f}"] = quality(out).fid
        previews[f"f = {f}"] = out[:16]
    values["fid_real"] = quality(x0).fid
    previews["held-out"] = x0[:16]
    values["inpaint_fid_ratio_f1_over_f4"] = _ratio(values["inpaint_fid_f1"], values["inpaint_fid_f4"])
    b = ctx.budget(*TIMING_BATCH)
    reps = -(-b // n)  # enough copies of the n images for one timed batch of b
    xb, mb = x0.repeat(reps, 1, 1, 1)[:b], mask.repeat(reps, 1, 1, 1)[:b]
    rates = _samples_per_second(ctx, mods, lambda m, k: complete(m, xb[:k], mb[:k], ctx.seed))
    for f in mods:
        values[f"inpaint_samples_per_s_f{f}"] = rates[f]
    values["inpaint_speedup_f4"] = _ratio(rates[4], rates[1])
    grid = image_rows(previews, ctx.figure("ldm_latent_inpainting"), "inpainting: erased (grey), LDM-1, LDM-4, original", 16)
    setting = (f"the f = 1 and f = 4 LDMs of ldm_downsampling_factor (16×16 Fashion-MNIST); {n} held-out images with "
               f"one erased rectangle each (sides {INPAINT_BOX[0]:.0%}–{INPAINT_BOX[1]:.0%}), replacement inpainting with "
               f"{steps} ancestral steps (= DDIM η = 1); FID of the completed images against the training images; "
               f"samples/s side by side ({ctx.budget(*TIMING_REPS)} interleaved repetitions of {b})")
    note = ("LDM's Table 6 models are trained for inpainting (the masked image concatenated to z); here both models are "
            "the unconditional ones and inpaint by replacement (the mask / x0 option of LDM's DDIM sampler): the known "
            "part is encoded from the masked image, a latent cell is known only if its whole 4×4 block is, and the known "
            "pixels are pasted back after decoding. fid_real is the held-out images' own FID at this n.")
    return Result(values, setting, [grid], note=note)
