"""``make bench``: diffzoo's speed, memory and quality-per-NFE harness on this machine's CPU.

    python -m benchmarks.run                       # everything, a few minutes on 2 cores
    python -m benchmarks.run --only train,sampling # some sections
    python -m benchmarks.run --smoke               # tiny sizes: checks the harness runs (tests)

Every figure is measured in this process, interleaved with its baseline (median of repeats) and
printed as a ratio; the tables go to ``<out>/cpu.json`` and the quality plot to
``<out>/quality_per_nfe.png``; the few-step solvers against diffusers (``solvers``, ~20 minutes on 2 cores:
skip it with ``--only train,sampling,overhead,memory,quality``) to ``<out>/solvers_quality.{md,json}`` and
``<out>/solvers_quality_per_nfe.png``; EDM against DDPM ε training on digits at equal compute (``edm``, ~20 minutes:
FID every 250 of 2000 steps for each, see ``benchmarks/edm_vs_ddpm.py``) to ``<out>/edm_vs_ddpm.{md,json,png}``.
Nothing here fails on speed. GPU figures: ``benchmarks/gpu.py``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

SECTIONS = ("train", "sampling", "overhead", "memory", "quality", "solvers", "edm")

# (section, size) → settings. "full" is what `make bench` runs; "smoke" only checks the wiring.
SETTINGS = {
    "full": {
        "train": [dict(name="digits", batch=32, steps=10, repeats=5),
                  dict(name="cifar10", batch=4, steps=3, repeats=3, fast_paths=False)],
        "sampling": [dict(kind="ddim", steps=50, batch=16, repeats=7), dict(kind="ddpm", steps=100, batch=16, repeats=7)],
        "overhead": dict(batch=16, steps=200, repeats=5),
        "memory": dict(name="cifar10", batch=4, repeats=3),
        "quality": dict(n=4000),
        "solvers": dict(n=20000),
        "edm": dict(train_steps=2000, every=250, n=1000),
    },
    "smoke": {
        "train": [dict(name="digits", batch=4, steps=1, repeats=1, fast_paths=False)],
        "sampling": [dict(kind="ddim", steps=3, batch=2, repeats=1)],
        "overhead": dict(batch=2, steps=5, repeats=1),
        "memory": dict(name="digits", batch=2, repeats=1),
        "quality": dict(n=256, nfes=(5,), with_ode=False),
        "solvers": dict(n=256, nfes=(5,), grids=("logsnr",), overhead=dict(batch=2, steps=5, repeats=1)),
        "edm": dict(train_steps=2, every=2, n=16, timing_repeats=1, timing_steps=1),
    },
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (checks that everything runs)")
    parser.add_argument("--out", default="benchmarks/results", help="directory for cpu.json and quality_per_nfe.png")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on a CPU)")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SECTIONS]
    if bad:
        parser.error(f"--only: unknown section(s) {', '.join(bad)}; valid: {', '.join(SECTIONS)}")

    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from .harness import machine_info, print_sections, write_json

    settings = SETTINGS["smoke" if args.smoke else "full"]
    out = Path(args.out)
    sections, extra = [], {}
    started = time.perf_counter()
    print(f"diffzoo benchmarks on {machine_info()['cpu']} ({torch.get_num_threads()} threads, torch {torch.__version__})")
    if "train" in wanted:
        from .bench_train import train_step_section

        for kw in settings["train"]:
            print(f"· training step: {kw['name']} …", flush=True)
            sections.append(train_step_section(**kw, compile=args.compile))
    if "sampling" in wanted:
        from .bench_sampling import sampling_section

        for kw in settings["sampling"]:
            print(f"· sampling: {kw['kind']} …", flush=True)
            sections.append(sampling_section(**kw))
    if "overhead" in wanted:
        from .bench_sampling import sampler_overhead_section

        print("· sampler overhead …", flush=True)
        sections.append(sampler_overhead_section(**settings["overhead"]))
    if "memory" in wanted:
        from .bench_memory import memory_section

        print("· activation memory …", flush=True)
        sections.append(memory_section(**settings["memory"]))
    quality = None
    if "quality" in wanted:
        from .bench_quality import quality_per_nfe

        print("· quality per NFE …", flush=True)
        quality = quality_per_nfe(**settings["quality"])
        extra["quality_per_nfe"] = quality.as_dict()

    solvers = None
    if "solvers" in wanted:
        from .bench_solvers import run_section

        print("· few-step solvers: quality per NFE vs diffusers, per-step overhead …", flush=True)
        solvers = run_section(out, **settings["solvers"])
        extra["solvers"] = solvers.as_dict()

    if "edm" in wanted:
        from .edm_vs_ddpm import run_section as edm_section

        print("· EDM vs DDPM training on digits: FID per training step at equal compute …", flush=True)
        runs = out / "edm_runs" if args.smoke else None
        extra["edm_vs_ddpm"] = edm_section(out, **settings["edm"], runs=runs)

    print()
    print_sections(sections)
    if quality is not None:
        quality.print()
        plot = quality.plot(out / "quality_per_nfe.png")
        print(f"plot: {plot}")
    if solvers is not None:
        from .bench_solvers import readme_section

        print(solvers.markdown())
        print(readme_section(solvers))
        print(f"table: {out / 'solvers_quality.md'}  plot: {out / 'solvers_quality_per_nfe.png'}")
    extra["smoke"] = args.smoke
    extra["seconds"] = round(time.perf_counter() - started, 1)
    path = write_json(out / ("cpu-smoke.json" if args.smoke else "cpu.json"), sections, extra)
    print(f"results: {path}  ({extra['seconds']} s)")
    return {"sections": sections, "quality": quality, "json": path}


if __name__ == "__main__":
    main()
