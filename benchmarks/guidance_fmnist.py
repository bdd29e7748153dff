"""How often guided Fashion-MNIST samples are classified as their target class.

Trains (or loads) a class-conditional Fashion-MNIST model with condition dropout (experiment
cfg_fashion_mnist) and a noise-aware classifier (experiment adm_classifier_fashion_mnist), then draws
samples of class ``i mod 10`` through the project's sampling loop and reports, for each setting, the
share that the data set's *clean* feature classifier (diffzoo.metrics.classifier) assigns to the
target class:

* unconditional (the null label, no guidance) — the chance baseline, ≈ 10%;
* classifier-free guidance, w ∈ {0, 1, 3, 5} (w = 0: the conditional model unguided; Ho & Salimans 2022);
* classifier guidance of the *unconditional* (null-label) model, s ∈ {1, 3, 10} (ADM Algorithm 2,
  x̂₀ clipped before the shift as guided-diffusion does; s = 0 is the unconditional row).

Sampling is the models' own ancestral sampler (clip x̂₀, σ² = β) respaced to ``--steps`` steps.
It checks what the denoiser-core issue asks of it and prints PASS / FAIL for each: the noise-aware
classifier reaches ≥ 80 % on clean test images; classifier guidance lifts the target rate from
chance to ≥ 0.6 at some s ≤ 10; classifier-free guidance to ≥ 0.8 at some w ≤ 5.

    python benchmarks/guidance_fmnist.py                  # the default run (about 25 minutes on 2 CPU cores)
    python benchmarks/guidance_fmnist.py --quick          # the same code path in a few minutes (weak models)
    python benchmarks/guidance_fmnist.py --diffusion-ckpt RUN/checkpoints/last.ckpt \\
        --classifier-ckpt CLS/checkpoints/last.ckpt --n 1000 --steps 100

Writes ``results.json``, ``results.md`` and ``grids/<setting>.png`` (the first 100 samples of each setting,
one row per target class) to ``--out``. Needs the Fashion-MNIST files
(data=fashion_mnist: the Debian package dataset-fashion-mnist or ``data.download=true``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

CFG_SCALES = (0.0, 1.0, 3.0, 5.0)
CLASSIFIER_SCALES = (1.0, 3.0, 10.0)
# (setting, default run, --quick): training budgets sized for ≤ 30 minutes on 2 CPU cores in all.
# Measured on 2 cores: a training step of the small U-Net at batch 32 ≈ 0.42 s, of the small classifier at
# batch 64 ≈ 0.25 s; sampling 300 images in 25 steps ≈ 30 s unguided, ≈ 90 s with CFG (w > 0) or classifier guidance.
DIFFUSION = {"default": ["trainer.max_steps=1600", "data.batch_size=32"], "quick": ["trainer.max_steps=200", "data.batch_size=32"]}
CLASSIFIER = {"default": ["trainer.max_steps=2000", "data.batch_size=64"], "quick": ["trainer.max_steps=200", "data.batch_size=32"]}
SMALL_UNET = ["net.base_channels=32", "net.channel_mult=[1,2,2]", "net.num_res_blocks=1", "net.attention_resolutions=[7]",
              "net.num_groups=8",
              "net.dropout=0.0", "optimizer.lr=1e-3", "lr_scheduler.warmup_steps=100", "ema.decay=0.999", "ema.warmup=true"]
SMALL_CLASSIFIER = ["net.base_channels=32", "net.num_res_blocks=1", "net.num_head_channels=32", "optimizer.lr=1e-3"]


def _train(experiment: str, run_dir: Path, overrides: list[str]) -> Path:
    from diffzoo.config import compose_config
    from diffzoo.train import train
    from omegaconf import open_dict

    last = run_dir / "checkpoints" / "last.ckpt"
    cfg = compose_config("train", [f"experiment={experiment}", "logger=csv", "final_samples=0", "callbacks.evaluation=null",
                                   "callbacks.sample_grid.every_n_steps=1000000", *overrides])
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    train(cfg)  # resumes, or says it already finished, when run_dir holds the run
    return last


@torch.no_grad()
def clean_accuracy(classifier_module, data_cfg) -> float:
    """The noise-aware classifier's accuracy on the clean test images (t = 0)."""
    from diffzoo.metrics.data import instantiate_datamodule, load_split

    split = load_split(instantiate_datamodule(data_cfg), "val")
    x = split.x.float() / 127.5 - 1
    hits = 0
    for start in range(0, x.shape[0], 500):
        xb = x[start:start + 500]
        logits = classifier_module.classify(xb, torch.zeros(xb.shape[0], dtype=torch.long))
        hits += int((logits.argmax(-1) == split.y[start:start + 500]).sum())
    return hits / x.shape[0]


@torch.no_grad()
def target_rate(module, spec, clean, n: int, seed: int, guidance=None, unconditional: bool = False, batch: int = 100,
                grid_path: Path | None = None) -> float:
    """Share of ``n`` samples (sample i: class i mod 10, noise of (seed, i)) that ``clean`` classifies as
    their target class. ``unconditional``: the model gets the null label (the guidance still gets y).
    ``grid_path``: the first batch as a PNG, one row per target class."""
    from diffzoo.guidance.labels import class_grid
    from diffzoo.samplers import sample_indices
    from diffzoo.utils.images import save_image_grid

    base, hits = module.denoiser(), 0
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        y = torch.tensor([i % 10 for i in idx])
        model = base.bind(y=torch.full_like(y, module.net.null_class)) if unconditional else base
        out = sample_indices(model, spec, idx, seed, module.data_shape, device=module.device, guidance=guidance, labels=y)
        hits += int((clean(out.x.clamp(-1, 1)).argmax(-1) == y).sum())
        if grid_path is not None and start == 0:
            cells, per_row = class_grid(out.x.clamp(-1, 1), y, 10)
            save_image_grid(cells, grid_path, nrow=per_row)
    return hits / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short training, few samples: the same code path in minutes")
    ap.add_argument("--diffusion-ckpt", type=Path, help="a cfg_fashion_mnist checkpoint (else trained here)")
    ap.add_argument("--classifier-ckpt", type=Path, help="an adm_classifier_fashion_mnist checkpoint (else trained here)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_guidance_fmnist"))
    ap.add_argument("--n", type=int, default=None, help="samples per setting (default 300; --quick 100)")
    ap.add_argument("--steps", type=int, default=None, help="respaced ancestral steps (default 25; --quick 10)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    mode = "quick" if args.quick else "default"
    n, steps = args.n or (100 if args.quick else 300), args.steps or (10 if args.quick else 25)
    out = args.out / mode
    t0 = time.time()
    diffusion_ckpt = args.diffusion_ckpt or _train("cfg_fashion_mnist", out / "cfg_model", SMALL_UNET + DIFFUSION[mode])
    t_diffusion = time.time() - t0
    classifier_ckpt = args.classifier_ckpt or _train("adm_classifier_fashion_mnist", out / "noisy_classifier",
                                                     SMALL_CLASSIFIER + CLASSIFIER[mode])
    t_train = time.time() - t0

    from diffzoo.guidance import ClassifierFreeGuidance
    from diffzoo.lit import load_classifier_guidance, load_module
    from diffzoo.metrics.classifier import load_or_train_classifier

    module = load_module(diffusion_ckpt)
    spec = module.sampler.with_steps(steps)
    clean, card, _ = load_or_train_classifier(module.run_config["data"], module.run_config["paths"]["cache_dir"])
    noisy_accuracy = clean_accuracy(load_module(classifier_ckpt), module.run_config["data"])
    settings = {"unconditional (null label)": dict(unconditional=True)}
    for w in CFG_SCALES:
        settings[f"cfg w={w:g}"] = dict(guidance=ClassifierFreeGuidance(w))
    for s in CLASSIFIER_SCALES:
        settings[f"classifier s={s:g} (unconditional base)"] = dict(
            guidance=load_classifier_guidance(str(classifier_ckpt), scale=s), unconditional=True)
    rates = {}
    for name, kwargs in settings.items():
        slug = name.split(" (")[0].replace(" ", "_").replace("=", "")
        rates[name] = target_rate(module, spec, clean, n, args.seed, grid_path=out / "grids" / f"{slug}.png", **kwargs)
        print(f"{name:>40}: {rates[name]:.3f} of {n} samples classified as their target class", flush=True)
    best_cfg = max(rates[f"cfg w={w:g}"] for w in CFG_SCALES)
    best_cg = max(rates[f"classifier s={s:g} (unconditional base)"] for s in CLASSIFIER_SCALES)
    checks = {"noise-aware classifier: clean test accuracy >= 0.8": noisy_accuracy >= 0.8,
              "classifier guidance: target rate >= 0.6 at some s <= 10": best_cg >= 0.6,
              "classifier-free guidance: target rate >= 0.8 at some w <= 5": best_cfg >= 0.8}
    report = {"mode": mode, "n": n, "sampler": spec.describe(), "seed": args.seed,
              "clean_feature_classifier_test_accuracy": card.test_accuracy, "noisy_classifier_clean_test_accuracy": noisy_accuracy,
              "diffusion_train_seconds": round(t_diffusion, 1), "train_seconds": round(t_train, 1),
              "total_seconds": round(time.time() - t0, 1), "diffusion_ckpt": str(diffusion_ckpt),
              "classifier_ckpt": str(classifier_ckpt), "target_rate": rates, "checks": checks}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    lines = ["| setting | target-class rate |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in rates.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"noise-aware classifier: {noisy_accuracy:.3f} on clean test images; clean feature classifier: "
          f"{card.test_accuracy:.3f}; {report['total_seconds'] / 60:.1f} minutes in all")
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {check}")
    print(f"results: {out / 'results.json'}; sample grids: {out / 'grids'}")


if __name__ == "__main__":
    main()
