"""Improved DDPM (learned Σ, cosine, L_hybrid) against DDPM (fixed Σ, linear, L_simple) on digits.

Both models are trained by the real ``train()`` with the same network width, optimiser, batch
size and step budget (``experiment=ddpm_digits`` vs ``experiment=iddpm_digits``), then evaluated
with their EMA weights at K respaced steps (Improved DDPM §4, default K = 50):

* the variational bound on the NLL in bits/dim of the held-out digits (DDPM eq. 5 with the
  discretised decoder; data quantised to 8 bits as a PNG would hold them). x̂_0 is clipped to
  [-1, 1] in the reverse mean, as improved-diffusion's ``image_nll.py`` does by default: without
  it the last respaced step of the cosine schedule, where x̂_0 = (x_t − √(1−ᾱ) ε)/√ᾱ divides by
  √ᾱ ≈ 5e-5, dominates the bound (``--no-clip`` shows it);
* FID and KID of samples against the training images in the feature space of the project's
  digits classifier (``fid_digits…``, not Inception FID);
* a sample grid of each.

The iDDPM claim under test: learned Σ keeps the bound and sample quality good with few steps,
where fixed Σ degrades (Nichol & Dhariwal 2021, §4, Fig. 8). Every number printed is measured
in this run.

    python benchmarks/iddpm_vs_ddpm.py                               # 2000 steps each, as ddpm_digits
    python benchmarks/iddpm_vs_ddpm.py --train-steps 800 --full-T    # also the bound over all T steps
    python benchmarks/iddpm_vs_ddpm.py --out DIR --reuse             # evaluate the checkpoints in DIR again
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def compose(overrides: list[str]):
    from diffzoo.config import compose_config

    return compose_config("train", overrides)


def train_one(experiment: str, steps: int, seed: int, run_dir: Path) -> Path:
    """Train ``experiment`` for ``steps`` steps into ``run_dir``; return its last checkpoint."""
    from omegaconf import open_dict

    from diffzoo.train import train

    cfg = compose([
        f"experiment={experiment}", f"trainer.max_steps={steps}", f"seed={seed}", "logger=csv",
        "final_samples=0", "callbacks.sample_grid.every_n_steps=100000000",
        f"callbacks.model_checkpoint.every_n_train_steps={steps}",
    ])
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] → the nearest of the 256 levels (the bytes a PNG would hold)."""
    from diffzoo.utils.images import to_uint8

    return to_uint8(x).float() / 127.5 - 1


class Quality:
    """FID / KID of generated images against reference images in one feature space."""

    def __init__(self, extractor, reference: torch.Tensor):
        from diffzoo.metrics import extract_features, feature_statistics
        from diffzoo.utils.images import to_uint8

        self.extractor = extractor
        self.reference = extract_features(extractor, to_uint8(reference)).features
        self.reference_stats = feature_statistics(self.reference)

    def __call__(self, samples: torch.Tensor) -> dict:
        from diffzoo.metrics import extract_features, feature_statistics, frechet_distance, kernel_inception_distance, metric_name
        from diffzoo.utils.images import to_uint8

        f = extract_features(self.extractor, to_uint8(samples)).features
        kid = kernel_inception_distance(f, self.reference, subsets=100, subset_size=min(1000, len(f)))
        space, n = self.extractor.space, len(f)
        return {metric_name("fid", n, space): frechet_distance(feature_statistics(f), self.reference_stats),
                metric_name("kid", n, space): kid.mean, metric_name("kid", n, space) + "_std": kid.std}


def evaluate(ckpt: Path, variances: list[str], steps: int, x: torch.Tensor, seed: int, out_dir: Path, name: str,
             full_T: bool, quality: Quality | None, n_quality: int, clip_x0: bool) -> list[dict]:
    from diffzoo.lit.build import load_module
    from diffzoo.metrics.vlb import vlb_bits_per_dim
    from diffzoo.samplers import ddpm
    from diffzoo.schedules import spaced_timesteps
    from diffzoo.utils.images import save_image_grid

    module = load_module(ckpt)
    denoiser = module.denoiser(use_ema=True)
    respaced = module.schedule.respace(spaced_timesteps(module.schedule.T, steps, "even"))

    def bound_record(schedule, variance: str) -> dict:
        gen = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        bound = vlb_bits_per_dim(denoiser, schedule, x, variance=variance, clip_x0=clip_x0, generator=gen)
        return {
            "variance": variance,
            "clip_x0": clip_x0,
            "nll_bpd": bound.total_bpd.mean().item(),
            "se": bound.total_bpd.std().item() / math.sqrt(len(x)),
            "decoder": bound.terms_bpd[:, 0].mean().item(),
            "prior": bound.prior_bpd.mean().item(),
            "nfe": schedule.T,
            "seconds": time.perf_counter() - t0,
        }

    result = []
    for variance in variances:
        at_k = bound_record(respaced, variance)
        result.append(at_k)
        if full_T:
            result.append(bound_record(module.schedule, variance))
        gen = torch.Generator().manual_seed(seed)
        n = max(64, n_quality if quality is not None else 0)
        samples = ddpm(denoiser, torch.randn(n, *x.shape[1:], generator=gen), steps, variance=variance, clip_x0=True,
                       spacing="even", generator=gen)  # the respaced chain (Improved DDPM §4)
        save_image_grid(samples[:64], out_dir / f"{name}_{variance}_{steps}steps.png")
        if quality is not None:
            at_k.update(quality(samples[:n_quality]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--sample-steps", type=int, default=50, help="respaced steps K for the bound and samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-T", action="store_true", help="also evaluate the bound over all T steps")
    parser.add_argument("--no-clip", action="store_true",
                        help="bound without clipping x0-hat to [-1, 1] (improved-diffusion's image_nll.py clips by default)")
    parser.add_argument("--quality-samples", type=int, default=1500, help="samples for FID / KID (0: skip)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--reuse", action="store_true", help="evaluate checkpoints already in --out instead of training")
    args = parser.parse_args()

    os.environ.setdefault("WANDB_MODE", "offline")
    out = args.out or Path(tempfile.mkdtemp(prefix="iddpm_vs_ddpm_"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    from diffzoo.data import DigitsDataModule

    data = DigitsDataModule()
    held_out = quantise(data.val_dataset_tensor())
    quality = None
    if args.quality_samples > 0:
        from diffzoo.metrics import make_extractor

        cfg = compose(["experiment=ddpm_digits"])
        extractor = make_extractor("classifier", cfg.data, data.data_shape, labelled=True, cache_dir=cfg.paths.cache_dir, seed=0)
        quality = Quality(extractor, quantise(data.train_dataset_tensor()))

    runs = {
        "ddpm": ("ddpm_digits", ["fixedlarge", "fixedsmall"]),
        "iddpm": ("iddpm_digits", ["learned_range"]),
    }
    report = {"train_steps": args.train_steps, "sample_steps": args.sample_steps, "held_out_images": len(held_out),
              "seed": args.seed, "weights": "ema", "out": str(out)}
    for name, (experiment, variances) in runs.items():
        ckpt = out / name / "checkpoints" / "last.ckpt"
        if not (args.reuse and ckpt.is_file()):
            t0 = time.perf_counter()
            ckpt = train_one(experiment, args.train_steps, args.seed, out / name)
            report[f"{name}_train_seconds"] = time.perf_counter() - t0
        report[name] = evaluate(ckpt, variances, args.sample_steps, held_out, args.seed, out, name, args.full_T,
                                quality, args.quality_samples, clip_x0=not args.no_clip)

    (out / "iddpm_vs_ddpm.json").write_text(json.dumps(report, indent=2))
    print(f"\nNLL bound in bits/dim on {len(held_out)} held-out digits (8-bit), EMA weights, "
          f"{args.train_steps} training steps each, seed {args.seed}, x0-hat clipped: {not args.no_clip}")
    print(f"{'model':<8} {'variance':<14} {'NFE':>5} {'bits/dim':>10} {'± s.e.':>8} {'decoder':>8}   sample quality")
    for name in runs:
        for r in report[name]:
            extra = "  ".join(f"{k} {v:.4g}" for k, v in r.items() if k.startswith(("fid", "kid")) and not k.endswith("_std"))
            print(f"{name:<8} {r['variance']:<14} {r['nfe']:>5} {r['nll_bpd']:>10.4f} {r['se']:>8.4f} {r['decoder']:>8.4f}   {extra}")

    def at_k(name: str, variance: str) -> float:
        return next(r["nll_bpd"] for r in report[name] if r["variance"] == variance and r["nfe"] == args.sample_steps)

    base, new = at_k("ddpm", "fixedlarge"), at_k("iddpm", "learned_range")
    print(f"iDDPM (learned) / DDPM (fixedlarge) bound at {args.sample_steps} steps: {new / base:.3f}")
    print(f"sample grids and JSON: {out}")


if __name__ == "__main__":
    sys.exit(main())
