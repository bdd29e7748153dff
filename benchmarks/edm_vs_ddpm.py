"""EDM training (Karras et al. 2022) against DDPM ε-prediction (Ho et al. 2020) at equal compute, on digits.

Both runs use the same U-Net (``net=unet_digits``), batch, optimiser, EMA and step budget; they differ
only in what EDM changes about *training*: the preconditioned denoiser (Table 1: c_skip, c_out, c_in,
c_noise), ln σ ~ N(−1.2, 1.2²) and the loss weight λ(σ). Each is the project's own experiment
(``ddpm_digits`` and ``edm_digits``) trained by the real ``train()``, and its evaluation callback
measures FID in the digits classifier's feature space every ``--every`` steps with **one sampler for
both**: EDM's Heun solver at 35 NFE on its default grid (the ρ-grid for EDM, ``trailing`` for the
discrete DDPM), so the curves compare the trained models, not their samplers. The per-step time of
the two is measured side by side in this process (interleaved, same batch) to show the compute per
step is equal; the FID-vs-step curves are then FID at equal compute.

    python -m benchmarks.edm_vs_ddpm                       # 2000 steps each, FID every 250 (≈ 25 min on 2 cores)
    python -m benchmarks.edm_vs_ddpm --train-steps 400 --every 200 --n 500   # a quick look
    python -m benchmarks.edm_vs_ddpm --out DIR --reuse     # re-plot the histories already in DIR

Writes ``DIR/edm_vs_ddpm.{json,md,png}`` (default DIR: ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("ddpm_digits", "edm_digits")
EVAL_SAMPLER = {"name": "edm_heun", "steps": 35}  # EDM Algorithm 1's budget, on both models


def train_with_history(experiment: str, steps: int, every: int, n: int, seed: int, run_dir: Path) -> list[dict]:
    """Train ``experiment`` into ``run_dir`` with the evaluation callback every ``every`` steps
    (``n`` samples, :data:`EVAL_SAMPLER`); return its FID records ``[{"step", "value", "std", "name"}]``."""
    from omegaconf import open_dict

    from diffzoo.config import compose_config
    from diffzoo.train import train

    history = run_dir / "eval" / "history.jsonl"
    if not history.is_file():
        cfg = compose_config("train", [
            f"experiment={experiment}", f"trainer.max_steps={steps}", f"seed={seed}", "logger=csv", "final_samples=0",
            "callbacks.sample_grid.every_n_steps=100000000", f"callbacks.evaluation.every_n_steps={every}",
            f"callbacks.evaluation.n={n}", "callbacks.evaluation.metrics=[fid]",
            f"++callbacks.evaluation.sampler={{name:{EVAL_SAMPLER['name']},steps:{EVAL_SAMPLER['steps']}}}",
        ])
        with open_dict(cfg):
            cfg.run_dir = str(run_dir)
        train(cfg)
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    return [{"step": r["step"], "value": r["value"], "std": r.get("std"), "name": r["name"], "nfe": r.get("nfe")}
            for r in rows if r.get("metric") == "fid"]


def step_times(repeats: int = 5, steps_per_repeat: int = 10, seed: int = 0) -> dict[str, float]:
    """Median seconds per optimisation step of each experiment's module on the same batch, interleaved."""
    from hydra.utils import instantiate

    from benchmarks.harness import interleave, median
    from diffzoo.config import compose_config
    from diffzoo.lit.build import build_module

    modules, batch = {}, None
    for exp in EXPERIMENTS:
        cfg = compose_config("train", [f"experiment={exp}", f"seed={seed}"])
        if batch is None:
            dm = instantiate(cfg.data)
            dm.prepare_data()
            dm.setup("fit")
            batch = next(iter(dm.train_dataloader()))
        module = build_module(cfg, data_shape=tuple(batch["x"].shape[1:]))
        modules[exp] = (module, torch.optim.Adam(module.parameters(), lr=1e-4))

    def one(exp: str):
        module, opt = modules[exp]

        def run() -> float:
            t0 = time.perf_counter()
            for i in range(steps_per_repeat):
                net = module.preconditioned() if hasattr(module, "preconditioned") else module.net  # what training_step feeds
                loss = module.objective(net, module.schedule, batch["x"]).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return (time.perf_counter() - t0) / steps_per_repeat
        return run

    times = interleave({exp: one(exp) for exp in EXPERIMENTS}, repeats)
    return {exp: median(v) for exp, v in times.items()}


def plot(curves: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for exp, rows in curves.items():
        ax.plot([r["step"] for r in rows], [r["value"] for r in rows], marker="o", label=exp)
    ax.set_xlabel("training step (equal compute per step)")
    ax.set_ylabel(f"FID (digits features), {EVAL_SAMPLER['name']} {EVAL_SAMPLER['steps']} NFE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("EDM vs DDPM ε-prediction on digits")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_section(out: Path, train_steps: int = 2000, every: int = 250, n: int = 1000, seed: int = 0,
                runs: Path | None = None, reuse: bool = False, timing_repeats: int = 5, timing_steps: int = 10) -> dict:
    """Train both experiments with their FID history, time their steps side by side, write
    ``out/edm_vs_ddpm.{md,json,png}``; return the JSON record (``seconds_per_step``, ``curves``, …).
    The step times are medians of ``timing_repeats`` interleaved blocks of ``timing_steps`` steps."""
    if train_steps < every or every < 1 or n < 2:
        raise ValueError("need train_steps >= every >= 1 and n >= 2")
    runs = runs or REPO / "runs" / "bench_edm_vs_ddpm"
    per_step = step_times(timing_repeats, timing_steps, seed=seed)
    curves = {}
    for exp in EXPERIMENTS:
        run_dir = runs / f"{exp}-{train_steps}-{every}-{n}-s{seed}"
        if not reuse and (run_dir / "eval" / "history.jsonl").is_file():
            (run_dir / "eval" / "history.jsonl").unlink()
        t0 = time.perf_counter()
        curves[exp] = train_with_history(exp, train_steps, every, n, seed, run_dir)
        print(f"{exp}: {len(curves[exp])} evaluations in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    steps = sorted({r["step"] for rows in curves.values() for r in rows})
    by = {exp: {r["step"]: r for r in rows} for exp, rows in curves.items()}
    lines = [f"EDM vs DDPM ε on digits: FID_digits{n} with {EVAL_SAMPLER['name']} at {EVAL_SAMPLER['steps']} NFE on both; "
             f"seconds per training step measured side by side: "
             + ", ".join(f"{e} {per_step[e] * 1e3:.1f} ms" for e in EXPERIMENTS)
             + f" (ratio EDM / DDPM {per_step['edm_digits'] / per_step['ddpm_digits']:.2f}).", "",
             "| step | " + " | ".join(EXPERIMENTS) + " |", "|---|" + "---|" * len(EXPERIMENTS)]
    for s in steps:
        cells = [f"{by[e][s]['value']:.3g}" if s in by[e] else "–" for e in EXPERIMENTS]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    record = {"seconds_per_step": per_step, "curves": curves, "sampler": EVAL_SAMPLER, "train_steps": train_steps,
              "n": n, "seed": seed}
    (out / "edm_vs_ddpm.md").write_text("\n".join(lines) + "\n")
    (out / "edm_vs_ddpm.json").write_text(json.dumps(record, indent=2))
    png = plot(curves, out / "edm_vs_ddpm.png")
    print("\n".join(lines))
    print(f"\nwritten: {out / 'edm_vs_ddpm.md'}, {out / 'edm_vs_ddpm.json'}, {png}")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--n", type=int, default=1000, help="samples per FID")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "bench_edm_vs_ddpm", help="where the two runs train")
    parser.add_argument("--reuse", action="store_true", help="keep runs whose history exists (else they are retrained)")
    args = parser.parse_args()
    if args.train_steps < args.every or args.every < 1 or args.n < 2:
        parser.error("need --train-steps >= --every >= 1 and --n >= 2")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    run_section(args.out, args.train_steps, args.every, args.n, args.seed, args.runs, args.reuse)


if __name__ == "__main__":
    main()
