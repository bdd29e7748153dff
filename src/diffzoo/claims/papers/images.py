"""Claims of the image papers, checked on 8×8 digits: DDPM, DDIM, Improved DDPM, Score SDE.

Every model is trained through its experiment (``ddpm_digits``, ``iddpm_digits``, ``sde_ve_digits``)
and measured with EMA weights; sample quality is in the digits classifier's feature space
(:class:`~diffzoo.claims.measure.SampleQuality`), likelihoods through ``diffzoo-eval``.
"""

from __future__ import annotations

import math

import torch

from ..criteria import Greater, Less, Measured, Within
from ..figures import figure, image_rows
from ..measure import draw, mean_se
from ..registry import Result, claim

DIGITS_STEPS = (2000, 30)  # training steps of every digits model (full, quick): experiment ddpm_digits' own
SAMPLES = 500  # samples per measured setting in a full run (FID's bootstrap s.e. shows what that buys)


def _ddpm_digits(ctx):
    return ctx.trained("ddpm_digits", ctx.budget(*DIGITS_STEPS))


def _gaussian_baseline(module, n: int, seed: int):
    """A full-covariance Gaussian fitted to the training images: ``(sample [n, C, H, W] clipped to
    [−1, 1], bits/dim of the held-out images)`` — the bits/dim of the continuous density at uniformly
    dequantised points plus log₂ 256 − log₂ 2 = 7 bits (Score SDE §4.3; see :mod:`diffzoo.likelihood`)."""
    from hydra.utils import instantiate

    data = instantiate(module.run_config["data"])
    data.setup("fit")
    train = data.train_dataset_tensor().flatten(1).double()
    held_out = data.val_dataset_tensor().flatten(1).double()
    mean, cov = train.mean(0), torch.cov(train.T) + 1e-4 * torch.eye(train.shape[1], dtype=torch.float64)
    gauss = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    gen = torch.Generator().manual_seed(seed)
    # held-out images sit on the 256 levels of [−1, 1]: dequantise within each level's cell of width 2/256
    levels = torch.round((held_out + 1) * 127.5)
    x = (levels + torch.rand(levels.shape, generator=gen, dtype=torch.float64)) / 128.0 - 1
    bpd = -gauss.log_prob(x) / (x.shape[1] * math.log(2)) + 7.0
    torch.manual_seed(seed)
    samples = gauss.sample((n,)).clamp(-1, 1).float().reshape(n, *module.data_shape)
    return samples, mean_se(bpd)


# ------------------------------------------------------------------------------------------ DDPM
@claim("ddpm_prior_term", paper="DDPM", where="§3.1 and §4 (L_T; linear β from 1e-4 to 0.02, T = 1000)",
       statement="With β linear from 1e-4 to 0.02 over T = 1000 steps the forward process ends at ᾱ_T = 4.04e-5, so "
                 "the prior term L_T is a negligible constant (≈ 2.9e-5 bits/dim at most).",
       criteria=[Within("alpha_bar_T", 4.036e-5, 0.002, relative=True), Less("prior_bpd_digits", 2.91e-5)])
def ddpm_prior_term(ctx) -> Result:
    from hydra.utils import instantiate

    from ...objectives.vlb import prior_bpd

    module = _ddpm_digits(ctx).load()
    data = instantiate(module.run_config["data"])
    data.setup("fit")
    x = data.val_dataset_tensor()
    prior = prior_bpd(module.schedule, x).double()  # L_T = KL(q(x_T | x_0) ‖ N(0, I)) (DDPM eq. 5), bits/dim
    values = {"alpha_bar_T": Measured(float(module.schedule.alphas_cumprod[-1])),
              "prior_bpd_digits": mean_se(prior)}
    return Result(values, f"the schedule of experiment=ddpm_digits; L_T on the {len(x)} held-out digits",
                  note="L_T depends only on ᾱ_T and the data; per dimension it is ≈ ᾱ_T·E[x_0²]/(2 ln 2) ≤ 2.91e-5 for data in [−1, 1].")


@claim("ddpm_digits_quality_and_bound", paper="DDPM", where="Table 1, Algorithm 2, eq. 5 (CIFAR-10: FID 3.17, NLL ≤ 3.75)",
       statement="A network trained with L_simple gives good samples with ancestral sampling (Algorithm 2) and a "
                 "tractable variational bound (eq. 5) on the likelihood; on digits both must beat a full-covariance "
                 "Gaussian fitted to the same data.",
       criteria=[Less("fid_ddpm", "fid_gaussian"), Less("nll_vlb_ddpm", "nll_gaussian")],
       shown=("fid_ddpm", "fid_gaussian", "fid_held_out", "nll_vlb_ddpm", "nll_gaussian"))
def ddpm_digits_quality_and_bound(ctx) -> Result:
    from hydra.utils import instantiate

    from ...samplers import SamplerSpec

    run = _ddpm_digits(ctx)
    module = run.load()
    quality = ctx.quality(module)
    n, steps = ctx.budget(SAMPLES, 32), ctx.budget(1000, 20)
    samples, _, nfe = draw(module, n, ctx.seed, sampler=SamplerSpec("ddpm", steps))
    baseline, nll_gaussian = _gaussian_baseline(module, n, ctx.seed)
    data = instantiate(module.run_config["data"])
    data.setup("fit")
    held_out = data.val_dataset_tensor()[:n]
    nll_n = ctx.budget(256, 8)
    values = {
        "fid_ddpm": quality(samples).fid,
        "fid_gaussian": quality(baseline).fid,
        "fid_held_out": quality(held_out).fid,
        "nll_vlb_ddpm": ctx.likelihood(run, "nll_vlb", f"nll.n={nll_n}", *([] if not ctx.quick else ["nll.steps=20"])),
        "nll_gaussian": nll_gaussian,
    }
    figure = image_rows({"DDPM (1000 steps)" if not ctx.quick else f"DDPM ({steps} steps)": samples, "Gaussian fit": baseline,
                    "held-out data": held_out}, ctx.figure("ddpm_digits"), "DDPM on 8×8 digits: samples against a fitted Gaussian")
    return Result(values, f"experiment=ddpm_digits, {run.steps} steps; {n} samples with {nfe} ancestral steps; "
                          f"bound over all T steps on {nll_n} held-out digits (8-bit)", [figure],
                  note=f"FID in the digits classifier's features ({quality.space}) against the training split; held-out "
                       "real digits give the floor (fid_held_out). The Gaussian's NLL is its density at uniformly dequantised "
                       "points (a bound of the same kind).")


# ------------------------------------------------------------------------------------------ DDIM
DDIM_ROWS = (("eta0", 0.0, False), ("eta0.5", 0.5, False), ("eta1", 1.0, False), ("sigma_hat", 0.0, True))


@claim("ddim_eta_ordering", paper="DDIM", where="Table 1 (CIFAR-10 at S = 10: 13.36 / 16.66 / 41.07 / 367.43 for η = 0 / 0.5 / 1 / σ̂)",
       statement="With few steps the deterministic sampler (η = 0) has the best FID, and larger η is worse, with DDPM's "
                 "σ̂ the worst (S = 10 and 20).",
       criteria=[Less(f"fid_{a}_S{s}", f"fid_{b}_S{s}") for s in (10, 20) for a, b in (("eta0", "eta1"), ("eta1", "sigma_hat"))],
       shown=("fid_eta0_S10", "fid_eta0.5_S10", "fid_eta1_S10", "fid_sigma_hat_S10"))
def ddim_eta_ordering(ctx) -> Result:
    from ...ddim_table import TableRow, ddim_sampler

    run = _ddpm_digits(ctx)
    module = run.load()
    quality = ctx.quality(module)
    n = ctx.budget(SAMPLES, 24)
    steps = (10, 20, 50)
    values, previews = {}, {}
    for key, eta, sigma_hat in DDIM_ROWS:
        for s in steps:
            spec = ddim_sampler(TableRow(key, eta, sigma_hat), s, "uniform", None)
            samples, _, _ = draw(module, n, ctx.seed, sampler=spec)
            values[f"fid_{key}_S{s}"] = quality(samples).fid
            if s == 10:
                previews[f"{key}, S = 10"] = samples
    figure = _plot_rows(values, steps, ctx.figure("ddim_eta"), "DDIM on digits: FID against steps S")
    grid = image_rows(previews, ctx.figure("ddim_eta_samples"), "DDIM at S = 10 (same noise per column)")
    return Result(values, f"experiment=ddpm_digits, {run.steps} steps; {n} samples per cell, uniform sub-sequence, "
                          "every cell from the same noise", [figure, grid],
                  note="s.e.: bootstrap over the samples of each cell (the cells share their noise, so differences are "
                       "more certain than the s.e. suggest).")


def _plot_rows(values: dict[str, Measured], steps, path, title: str):
    with figure(path, figsize=(5, 3.5), title=title) as (_, ax):
        for key, _, sigma_hat in DDIM_ROWS:
            ys = [values[f"fid_{key}_S{s}"] for s in steps]
            ax.errorbar(steps, [y.value for y in ys], yerr=[2 * y.se for y in ys], marker="o", capsize=3,
                        linestyle="--" if sigma_hat else "-", label="σ̂" if sigma_hat else f"η = {key[3:]}")
        ax.set_xscale("log")
        ax.set_xlabel("steps S")
        ax.set_ylabel("FID (digits features), ± 2 s.e.")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return path


@claim("ddim_reconstruction", paper="DDIM", where="§5.4, Table 2 (CIFAR-10 per-dim MSE 0.014 at S = 10 → 0.0009 at S = 100)",
       statement="Encoding an image with the η = 0 ODE and decoding it again reconstructs it, with an error that falls "
                 "as the number of steps S grows.",
       criteria=[Greater("mse_S10", "mse_S20"), Greater("mse_S20", "mse_S50"), Greater("mse_S50", "mse_S100")],
       shown=("mse_S10", "mse_S20", "mse_S50", "mse_S100"))
def ddim_reconstruction(ctx) -> Result:
    from hydra.utils import instantiate

    from ...samplers import ddim_decode, ddim_encode

    run = _ddpm_digits(ctx)
    module = run.load()
    denoiser = module.denoiser(use_ema=True)
    data = instantiate(module.run_config["data"])
    data.setup("fit")
    x0 = data.val_dataset_tensor()[: ctx.budget(200, 8)]
    values = {}
    with torch.no_grad():
        for s in (10, 20, 50, 100):
            latent = ddim_encode(denoiser, denoiser.from_data(x0), s)
            rec = denoiser.to_data(ddim_decode(denoiser, latent, s))
            mse = (rec - x0).pow(2).flatten(1).mean(1).double()
            values[f"mse_S{s}"] = mean_se(mse)
    return Result(values, f"experiment=ddpm_digits, {run.steps} steps; {len(x0)} held-out digits in [−1, 1], uniform sub-sequence",
                  note="s.e. over images (the same images at every S: a paired comparison, so the s.e. is conservative).")


# ------------------------------------------------------------------------------------------ iDDPM
@claim("iddpm_learned_variance", paper="iDDPM", where="§3.1 and §4, Fig. 8 (50 sampling steps)",
       statement="With 50 respaced sampling steps, a model with learned Σ (L_hybrid, cosine schedule) keeps a better "
                 "likelihood bound and better samples than fixed Σ (β_t or β̃_t) trained with L_simple.",
       criteria=[Less("nll_learned", "nll_fixedlarge"), Less("nll_learned", "nll_fixedsmall"),
                 Less("fid_learned", "fid_fixedlarge"), Less("fid_learned", "fid_fixedsmall")])
def iddpm_learned_variance(ctx) -> Result:
    from ...samplers import SamplerSpec

    steps, n, nll_n = 50, ctx.budget(SAMPLES, 32), ctx.budget(256, 8)
    ddpm_run, iddpm_run = _ddpm_digits(ctx), ctx.trained("iddpm_digits", ctx.budget(*DIGITS_STEPS))
    values, previews = {}, {}
    for run, variance in ((ddpm_run, "fixedlarge"), (ddpm_run, "fixedsmall"), (iddpm_run, "learned_range")):
        module = run.load()
        key = "learned" if variance == "learned_range" else variance
        values[f"nll_{key}"] = ctx.likelihood(run, "nll_vlb", f"nll.n={nll_n}", f"nll.steps={steps}", f"nll.variance={variance}")
        samples, _, _ = draw(module, n, ctx.seed, sampler=SamplerSpec("ddpm", steps, variance=variance, clip_x0=True))
        values[f"fid_{key}"] = ctx.quality(module)(samples).fid
        previews[f"{run.experiment}, {variance}"] = samples
    figure = image_rows(previews, ctx.figure("iddpm_50_steps"), "50 respaced ancestral steps: fixed Σ (DDPM) vs learned Σ (iDDPM)")
    return Result(values, f"experiment=ddpm_digits vs iddpm_digits, {ddpm_run.steps} steps each (same net, optimiser, batch); "
                          f"bound on {nll_n} held-out digits and {n} samples at {steps} respaced steps", [figure],
                  note="x̂₀ clipped in the bound's reverse mean, as improved-diffusion's image_nll.py.")


# ------------------------------------------------------------------------------------------ Score SDE
@claim("score_sde_ode_likelihood", paper="Score SDE", where="§4.3, Table 2 (DDPM on CIFAR-10: VLB ≤ 3.70, ODE 3.28 bits/dim)",
       statement="The probability-flow ODE gives the exact likelihood of a trained DDPM, lower than its variational bound.",
       criteria=[Less("nll_ode", "nll_vlb")])
def score_sde_ode_likelihood(ctx) -> Result:
    run = _ddpm_digits(ctx)
    n = ctx.budget(128, 4)
    quick = ["nll.rtol=1e-3", "nll.atol=1e-3"] if ctx.quick else []
    values = {"nll_ode": ctx.likelihood(run, "nll_ode", f"nll.n={n}", *quick),
              "nll_vlb": ctx.likelihood(run, "nll_vlb", f"nll.n={n}", *(["nll.steps=20"] if ctx.quick else []))}
    return Result(values, f"experiment=ddpm_digits, {run.steps} steps, on the VP SDE of its β table; {n} held-out digits, "
                          "uniform dequantisation, Hutchinson (Rademacher) trace, RK45 at 1e-5",
                  note="Both in bits/dim of 8-bit data; s.e. over images (the same images for both).")


@claim("score_sde_pc_sampling", paper="Score SDE", where="§4.2, Table 1 (P2000 vs PC1000 at equal cost)",
       statement="At an equal number of network evaluations, predictor–corrector sampling (reverse diffusion + "
                 "Langevin corrector) gives better samples than the predictor alone with twice the steps (VE SDE).",
       criteria=[Less("fid_pc", "fid_p")])
def score_sde_pc_sampling(ctx) -> Result:
    from ...samplers import SamplerSpec

    run = ctx.trained("sde_ve_digits", ctx.budget(*DIGITS_STEPS))
    module = run.load()
    nfe, n = ctx.budget(200, 10), ctx.budget(SAMPLES, 32)
    pc, _, nfe_pc = draw(module, n, ctx.seed, sampler=SamplerSpec("pc", nfe, predictor="reverse_diffusion", corrector="langevin",
                                                                     snr=0.16, n_corrector=1))
    p, _, nfe_p = draw(module, n, ctx.seed, sampler=SamplerSpec("pc", nfe, predictor="reverse_diffusion", corrector="none"))
    quality = ctx.quality(module)
    values = {"fid_pc": quality(pc).fid, "fid_p": quality(p).fid, "nfe_pc": Measured(nfe_pc), "nfe_p": Measured(nfe_p)}
    figure = image_rows({f"PC (NFE {nfe_pc})": pc, f"P only (NFE {nfe_p})": p}, ctx.figure("score_sde_pc"),
                   "VE SDE on digits: predictor–corrector vs predictor only at equal NFE")
    return Result(values, f"experiment=sde_ve_digits, {run.steps} steps; {n} samples per sampler, NFE {nfe_pc} vs {nfe_p}, "
                          "snr 0.16 (the paper's CIFAR-10 VE setting)", [figure])
