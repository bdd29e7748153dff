"""NCSN's 2-D toy (Song & Ermon 2019, §3.2–3.3, Fig. 3): plain vs annealed Langevin dynamics, with the
exact score and with a trained NCSN.

Data ``0.8·N((5, 5), I) + 0.2·N((−5, −5), I)``; 1280 samples start from ``U[−8, 8]²``. Plain Langevin
(1000 steps, α = 0.1, the paper's update ``x + (α/2)s + √α z``) with the data score cannot move mass
between the separated modes, so it keeps the start's ≈50/50 split; annealed Langevin (σ = exp(linspace(
ln 20, 0, 10)), 100 steps per level, α_i = 0.1·(σ_i/σ_L)²) recovers the 0.8 weight. Two exact scores:
the NCSN code's toy score (``GMMDistAnneal``: the mixture with component std σ) and the true noisy score
of ``x + σz`` (component std √(1 + σ²), what denoising score matching learns); and the trained one:
experiment ``ncsn_toy`` through the real ``train()``. Every number printed is measured in this run; the
figure (``ncsn_toy.png``) shows the samples of every row.

    python benchmarks/ncsn_toy.py                          # train (2000 steps, ~1 CPU minute) and compare, 5 seeds
    python benchmarks/ncsn_toy.py --out DIR --reuse        # reuse DIR/ncsn_toy/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from diffzoo.claims.papers.toys import ncsn_toy_samplers as run_samplers
from diffzoo.toys.ncsn_mixture import MAIN_MODE_WEIGHT, N_SAMPLES, exact_scores, fraction_in_main_mode


def compose(overrides: list[str]):
    from diffzoo.config import compose_config

    return compose_config("train", overrides)


def train_ncsn_toy(run_dir: Path, steps: int | None, seed: int) -> Path:
    """Train experiment ``ncsn_toy`` (its own step count unless ``steps``); return the last checkpoint."""
    from omegaconf import open_dict

    from diffzoo.train import train

    overrides = ["experiment=ncsn_toy", f"seed={seed}", "logger=csv", "final_samples=0", "callbacks.sample_grid.every_n_steps=100000000"]
    if steps:
        overrides += [f"trainer.max_steps={steps}", f"callbacks.model_checkpoint.every_n_train_steps={steps}"]
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


def save_figure(panels: dict[tuple[str, str], torch.Tensor], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted({r for r, _ in panels}, key=list(dict.fromkeys(r for r, _ in panels)).index)
    cols = ["plain Langevin", "annealed Langevin"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4 * len(cols), 4 * len(rows)), dpi=90, squeeze=False)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            x = panels[row, col].float().numpy()
            ax = axes[i, j]
            ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
            ax.set_xlim(-10, 10)
            ax.set_ylim(-10, 10)
            ax.set_aspect("equal")
            ax.set_title(f"{row}\n{col}: {fraction_in_main_mode(panels[row, col]):.3f} in (5, 5)", fontsize=8)
    fig.suptitle(f"NCSN toy: 0.8 N((5,5), I) + 0.2 N((-5,-5), I), {N_SAMPLES} samples from U[-8, 8]^2 (seed 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=None, help="default: the experiment's own (2000)")
    parser.add_argument("--seeds", type=int, default=5, help="sampling seeds per row")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary one)")
    parser.add_argument("--reuse", action="store_true", help="reuse the checkpoint already in --out")
    args = parser.parse_args()

    os.environ.setdefault("WANDB_MODE", "offline")
    out = args.out or Path(tempfile.mkdtemp(prefix="ncsn_toy_"))
    out.mkdir(parents=True, exist_ok=True)
    from diffzoo.lit.build import load_module

    ckpt = out / "ncsn_toy" / "checkpoints" / "last.ckpt"
    if not (args.reuse and ckpt.is_file()):
        ckpt = train_ncsn_toy(out / "ncsn_toy", args.train_steps, args.train_seed)
    module = load_module(ckpt)
    sigmas = module.schedule.sigmas.clone()  # exp(linspace(ln 20, 0, 10)), from the experiment
    scores = {**exact_scores(), f"trained NCSN (ncsn_toy, EMA, step {module.global_step_loaded})": module.score_fn(use_ema=True)}

    sd = math.sqrt(MAIN_MODE_WEIGHT * (1 - MAIN_MODE_WEIGHT) / N_SAMPLES)
    report = {"n_samples": N_SAMPLES, "true_weight": MAIN_MODE_WEIGHT, "binomial_sd": sd, "seeds": args.seeds,
              "checkpoint": str(ckpt), "rows": {}}
    panels = {}
    print(f"fraction of {N_SAMPLES} samples in the (5, 5) mode (true {MAIN_MODE_WEIGHT}, binomial sd {sd:.3f}); "
          f"mean ± sd over {args.seeds} sampling seeds")
    print(f"{'score':44s} {'start':>14s} {'plain Langevin':>16s} {'annealed Langevin':>18s}")
    for name, score_fn in scores.items():
        fracs = {"start": [], "plain Langevin": [], "annealed Langevin": []}
        for seed in range(args.seeds):
            with torch.no_grad():
                result = run_samplers(score_fn, sigmas, seed)
            for key, x in result.items():
                fracs[key].append(fraction_in_main_mode(x))
            if seed == 0:
                panels.update({(name, key): x for key, x in result.items()})
        summary = {k: (sum(v) / len(v), torch.tensor(v).std().item() if len(v) > 1 else 0.0) for k, v in fracs.items()}
        report["rows"][name] = {k: {"mean": m, "sd": s, "values": fracs[k]} for k, (m, s) in summary.items()}
        print(f"{name:44s} " + " ".join(f"{summary[k][0]:.3f} ± {summary[k][1]:.3f}".rjust(w)
                                           for k, w in (("start", 14), ("plain Langevin", 16), ("annealed Langevin", 18))))
    figure = save_figure(panels, out / "ncsn_toy.png")
    (out / "ncsn_toy.json").write_text(json.dumps(report, indent=2))
    print(f"figure: {figure}\nnumbers: {out / 'ncsn_toy.json'}")


if __name__ == "__main__":
    main()
