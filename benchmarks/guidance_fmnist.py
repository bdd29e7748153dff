"""How often guided Fashion-MNIST samples are classified as their target class.

Trains (or loads) a class-conditional Fashion-MNIST model with condition dropout (experiment
cfg_fashion_mnist) and a noise-aware classifier (experiment adm_classifier_fashion_mnist), then draws
samples of class ``i mod 10`` and reports, for each setting, the share the data set's *clean*
feature classifier (diffzoo.metrics.classifier, ~90% test accuracy) assigns to the target class:

* unconditional (null label, no guidance) — the chance baseline, ≈ 10%;
* classifier-free guidance, w ∈ {0, 1, 3} (w = 0: the conditional model unguided);
* classifier guidance of the *unconditional* (null-label) model, s ∈ {0, 1, 3} (ADM Alg. 2).

    python benchmarks/guidance_fmnist.py --quick          # a few minutes on a CPU (tiny, short runs)
    python benchmarks/guidance_fmnist.py --diffusion-ckpt RUN/checkpoints/last.ckpt \\
        --classifier-ckpt CLS/checkpoints/last.ckpt --n 1000 --steps 100

Needs the Fashion-MNIST files (data=fashion_mnist: the Debian package dataset-fashion-mnist or
``data.download=true``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _train(experiment: str, run_dir: Path, overrides: list[str]) -> Path:
    from omegaconf import open_dict

    from diffzoo.config import compose_config
    from diffzoo.train import train

    cfg = compose_config("train", [f"experiment={experiment}", "logger=csv", "final_samples=0",
                                   "callbacks.evaluation=null", *overrides])
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


@torch.no_grad()
def _rate(module, eps_fn_for, clean, n: int, steps: int, seed: int, batch: int) -> float:
    from diffzoo.schedules.discrete import spaced_timesteps
    from diffzoo.utils.random import per_sample_generators, randn

    schedule = module.schedule.respace(spaced_timesteps(module.schedule.T, steps, "even"))
    hits = 0
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        y = torch.tensor([i % 10 for i in idx])
        x_T = torch.stack([randn((1, *module.data_shape), [g])[0] for g in per_sample_generators(seed, idx, stream="x_T")])
        x = module.sampler(eps_fn_for(y, schedule), schedule, x_T, generator=per_sample_generators(seed, idx, stream="steps"))
        hits += int((clean(x.clamp(-1, 1)).argmax(-1) == y).sum())
    return hits / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny nets, short training, few samples (CPU, minutes)")
    ap.add_argument("--diffusion-ckpt", type=Path, help="a cfg_fashion_mnist checkpoint (else trained here)")
    ap.add_argument("--classifier-ckpt", type=Path, help="an adm_classifier_fashion_mnist checkpoint (else trained here)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_guidance_fmnist"))
    ap.add_argument("--n", type=int, default=None, help="samples per setting (default 1000; --quick 100)")
    ap.add_argument("--steps", type=int, default=None, help="respaced ancestral steps (default 100; --quick 25)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, steps = args.n or (100 if args.quick else 1000), args.steps or (25 if args.quick else 100)
    shrink = ["net.base_channels=32", "net.num_groups=8", "data.batch_size=64"] if args.quick else []
    t0 = time.time()
    diffusion_ckpt = args.diffusion_ckpt or _train("cfg_fashion_mnist", args.out / "cfg_model",
                                                   shrink + [f"trainer.max_steps={400 if args.quick else 50000}",
                                                             "model.optimizer.lr=1e-3", "model.ema_decay=0.99"])
    classifier_ckpt = args.classifier_ckpt or _train("adm_classifier_fashion_mnist", args.out / "noisy_classifier",
                                                     shrink + ["net.num_head_channels=32", "model.optimizer.lr=1e-3",
                                                               f"trainer.max_steps={300 if args.quick else 20000}"])
    train_s = time.time() - t0

    from diffzoo.guidance import ClassifierFreeGuidance, ClassifierGuidance, NoGuidance, load_classifier_checkpoint
    from diffzoo.lit.build import load_module
    from diffzoo.metrics.classifier import load_or_train_classifier

    module = load_module(diffusion_ckpt)
    net, null = module.ema.shadow, module.ema.shadow.null_class
    clean, card, _ = load_or_train_classifier(module.run_config["data"], module.run_config["paths"]["cache_dir"])
    noisy = load_classifier_checkpoint(classifier_ckpt)

    def conditional(x, t, y):
        return net(x, t.to(x.dtype), y=y)

    def unconditional(x, t, y):  # the same network with the null label: p(x) (CFG §3.1)
        return net(x, t.to(x.dtype), y=torch.full_like(y, null))

    settings = {"unconditional (null label)": lambda y, s: NoGuidance()(unconditional, s, y)}
    for w in (0.0, 1.0, 3.0):
        settings[f"cfg w={w:g}"] = lambda y, s, w=w: ClassifierFreeGuidance(w)(conditional, s, y, null)
    for scale in (0.0, 1.0, 3.0):
        settings[f"classifier s={scale:g} (unconditional base)"] = \
            lambda y, s, scale=scale: ClassifierGuidance(noisy, scale=scale)(unconditional, s, y)
    results = {}
    for name, make in settings.items():
        results[name] = _rate(module, make, clean, n, steps, args.seed, batch=100)
        print(f"{name:>40}: {results[name]:.3f} of {n} samples classified as their target class")
    report = {"n": n, "steps": steps, "quick": args.quick, "clean_classifier_test_accuracy": card.test_accuracy,
              "train_seconds": round(train_s, 1), "total_seconds": round(time.time() - t0, 1),
              "diffusion_ckpt": str(diffusion_ckpt), "classifier_ckpt": str(classifier_ckpt), "target_rate": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"clean classifier test accuracy {card.test_accuracy:.3f}; results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
