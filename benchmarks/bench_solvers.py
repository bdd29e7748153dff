"""Few-step solvers: quality per NFE on an exact-score problem, and per-step overhead, side by side with
diffusers' schedulers in one process.

**Quality.** Data: a 4-component 2-D Gaussian mixture (:func:`mixture`). Forward process: DDPM's
linear β (T = 1000). Model: the exact ε of the mixture, ``ε*(x_t, t) = −σ_t ∇log p_t(x_t)``, evaluated
at any (fractional) index t with ``log α`` interpolated between steps — the same function for diffzoo
(through the solvers' discrete call form ``solver(eps_fn, schedule, x_T, steps=K)``) and for diffusers
(called with the scheduler's timesteps), from the same ``x_T``. Distance: sliced W₁ (256 directions)
between the samples and 20k true samples; the floor is true vs true. Each row spends at most the
column's NFE (counted calls; where fewer, the cell says how many). Stochastic samplers use one seed.

**Overhead.** The time per network evaluation of a whole sampling loop with a trivial network (zeros)
on a ``[16, 3, 32, 32]`` batch: each diffzoo solver against the diffusers scheduler of the same method
(``set_timesteps`` + ``scale_model_input`` + ``step``), interleaved, median of repeats.

    python -m benchmarks.bench_solvers            # table, plot and overhead (a few minutes, 1 thread)
"""

from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["mixture", "SolverTable", "solver_quality", "solver_overhead", "readme_section", "DIFFZOO_ROWS",
           "DIFFUSERS_ROWS"]

NFES = (5, 10, 20)
T = 1000
GRID_CHOICES = ("logsnr", "karras", "optimized", "trailing", "quadratic")

# (row name, sampler name, options): every diffzoo solver with its defaults
DIFFZOO_ROWS = [
    ("edm_euler", "edm_euler", {}), ("edm_heun", "edm_heun", {}), ("dpm_solver", "dpm_solver", {}),
    ("dpmpp_2s", "dpmpp_2s", {}), ("dpmpp_2m", "dpmpp_2m", {}), ("dpmpp_3m", "dpmpp_3m", {}),
    ("dpmpp_2m_sde", "dpmpp_2m_sde", {}), ("unipc", "unipc", {}), ("ddim", "ddim", {}),
]
# (row name, scheduler class name, constructor options)
DIFFUSERS_ROWS = [
    ("DDIM trailing", "DDIMScheduler", dict(timestep_spacing="trailing")),
    ("DPM++ 2M", "DPMSolverMultistepScheduler", {}),
    ("DPM++ 2M logSNR", "DPMSolverMultistepScheduler", dict(use_lu_lambdas=True)),
    ("DPM++ 2M Karras", "DPMSolverMultistepScheduler", dict(use_karras_sigmas=True)),
    ("DPM++ 3M logSNR", "DPMSolverMultistepScheduler", dict(solver_order=3, use_lu_lambdas=True)),
    ("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", dict(algorithm_type="sde-dpmsolver++", use_karras_sigmas=True)),
    ("DPM-Solver singlestep 3", "DPMSolverSinglestepScheduler", dict(solver_order=3, algorithm_type="dpmsolver", final_sigmas_type="sigma_min")),
    ("DPM++ singlestep 3", "DPMSolverSinglestepScheduler", dict(solver_order=3)),
    ("DPM++ 2S", "DPMSolverSinglestepScheduler", dict(solver_order=2)),
    ("UniPC bh2", "UniPCMultistepScheduler", {}),
    ("UniPC bh1", "UniPCMultistepScheduler", dict(solver_type="bh1")),
    ("UniPC bh2 Karras", "UniPCMultistepScheduler", dict(use_karras_sigmas=True)),
    ("DEIS 3", "DEISMultistepScheduler", dict(solver_order=3)),
    ("Heun Karras", "HeunDiscreteScheduler", dict(use_karras_sigmas=True)),
    ("Euler Karras", "EulerDiscreteScheduler", dict(use_karras_sigmas=True)),
    ("Euler", "EulerDiscreteScheduler", {}),
]


def mixture():
    """The benchmark's data: four anisotropic clusters of different widths and weights in [−1, 1]²."""
    from diffzoo.data.gaussian_mixture import GaussianMixture

    return GaussianMixture(weights=[0.4, 0.3, 0.2, 0.1],
                           means=[[-0.5, -0.5], [0.6, -0.4], [-0.3, 0.6], [0.5, 0.5]],
                           covs=[[0.05, 0.1], [0.1, 0.05], [0.15, 0.08], [0.08, 0.08]])


class _ExactEps:
    """``ε*(x, t)`` of the mixture under ``schedule`` at (fractional) indices ``t``; counts its calls."""

    def __init__(self, mix, schedule):
        self.mix, self.schedule, self.calls = mix, schedule, 0

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        self.calls += 1
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(x.shape[0]).cpu()
        a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        return (-s[:, None] * self.mix.score(x, a, s)).to(x.dtype)


@dataclass
class SolverTable:
    """``rows[library][name] = {NFE column: (SW₁, NFE used)}``; ``floor`` = SW₁(true, true)."""

    rows: dict[str, dict[str, dict[int, tuple[float, int]]]] = field(default_factory=dict)
    floor: float = 0.0
    n: int = 0
    overhead: list[tuple[str, float, float]] = field(default_factory=list)  # (pair, ours s/step, theirs s/step)
    nfes: tuple[int, ...] = NFES

    def as_dict(self) -> dict:
        return {"n": self.n, "floor_sw1": self.floor, "nfes": list(self.nfes),
                "rows": {lib: {name: {str(k): {"sw1": v[0], "nfe": v[1]} for k, v in row.items()} for name, row in rows.items()}
                         for lib, rows in self.rows.items()},
                "overhead": [{"pair": p, "diffzoo_s_per_nfe": a, "diffusers_s_per_nfe": b, "ratio": a / b}
                             for p, a, b in self.overhead]}

    def best(self, library: str, nfe: int) -> tuple[str, float]:
        """The row with the smallest SW₁ at ``nfe`` (using at most ``nfe`` evaluations)."""
        cells = [(name, row[nfe][0]) for name, row in self.rows.get(library, {}).items()
                 if nfe in row and row[nfe][1] <= nfe and math.isfinite(row[nfe][0])]
        return min(cells, key=lambda c: c[1])

    def markdown(self) -> str:
        """The table (markdown): one row per sampler, one column per NFE."""
        lines = ["| library | sampler | " + " | ".join(f"NFE {k}" for k in self.nfes) + " |",
                 "|---|---|" + "---|" * len(self.nfes)]
        for library, rows in self.rows.items():
            for name, row in rows.items():
                cells = []
                for k in self.nfes:
                    sw, used = row.get(k, (math.nan, 0))
                    cells.append(f"{sw:.4f}" + ("" if used == k else f" ({used})"))
                lines.append(f"| {library} | {name} | " + " | ".join(cells) + " |")
        lines.append("| — | true vs true (floor) | " + " | ".join(f"{self.floor:.4f}" for _ in self.nfes) + " |")
        return "\n".join(lines)

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for library, style in (("diffzoo", "-"), ("diffusers", ":")):
            for name, row in self.rows.get(library, {}).items():
                pts = sorted((used, sw) for sw, used in row.values())
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", markersize=3, label=f"{library}: {name}")
        ax.axhline(self.floor, color="k", linewidth=0.8, label="true vs true")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(self.nfes), labels=[str(k) for k in self.nfes])
        ax.minorticks_off()
        ax.set_xlabel("network evaluations (NFE)")
        ax.set_ylabel("sliced W₁ to the true mixture")
        ax.set_title("Few-step solvers, exact ε of a 4-Gaussian mixture (DDPM linear β)")
        ax.legend(fontsize=5, ncol=2)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130)
        plt.close(fig)
        return path


def _diffusers_sample(cls_name: str, options: dict, model, x_T: torch.Tensor, nfe: int, seed: int):
    """Run a diffusers scheduler loop with at most ``nfe`` model calls → (samples, calls)."""
    import diffusers

    cls = getattr(diffusers, cls_name)
    sched = cls(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", **options)
    K = nfe
    while True:
        sched.set_timesteps(K)
        if len(sched.timesteps) <= nfe or K == 1:
            break
        K -= 1
    takes_gen = "generator" in inspect.signature(sched.step).parameters
    gen = torch.Generator().manual_seed(seed)
    x = x_T * sched.init_noise_sigma
    model.calls = 0
    for t in sched.timesteps:
        eps = model(sched.scale_model_input(x, t), t)
        x = sched.step(eps, t, x, **({"generator": gen} if takes_gen else {})).prev_sample
    return x, model.calls


def solver_quality(n: int = 20000, seed: int = 0, nfes=NFES, grids=GRID_CHOICES, with_diffusers: bool = True) -> SolverTable:
    """Every diffzoo solver (default grid, and the best of ``grids``) and every diffusers row at ``nfes``."""
    from diffzoo.metrics.toy import sliced_wasserstein
    from diffzoo.samplers import SAMPLERS
    from diffzoo.schedules import DiscreteSchedule, linear_betas
    from diffzoo.utils.random import per_sample_generators

    mix = mixture()
    schedule = DiscreteSchedule(linear_betas(T))
    model = _ExactEps(mix, schedule)
    truth = mix.sample(n, generator=torch.Generator().manual_seed(seed + 1)).double()

    def sw1(x):
        return sliced_wasserstein(x.double(), truth, n_projections=256, p=1, generator=torch.Generator().manual_seed(seed))

    table = SolverTable(n=n, nfes=tuple(nfes), floor=sw1(mix.sample(n, generator=torch.Generator().manual_seed(seed + 2))))
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    gens = per_sample_generators(seed, range(n), stream="steps") if n <= 4096 else torch.Generator().manual_seed(seed + 3)
    ours = table.rows.setdefault("diffzoo", {})
    for name, sampler, options in DIFFZOO_ROWS:
        fn = SAMPLERS[sampler]
        takes_grid = "grid" in inspect.signature(fn.core).parameters
        for k in nfes:
            results = {}
            for grid in ([None, *grids] if takes_grid else [None]):
                opts = dict(options, **({"grid": grid} if grid else {}))
                model.calls = 0
                out = fn(model, schedule, x_T, k, **opts, generator=gens) if sampler != "ddim" else \
                    fn(model, schedule, x_T, k, generator=gens)
                results[grid] = (sw1(out), model.calls)
            ours.setdefault(name, {})[k] = results[None]
            if takes_grid:
                best = min(grids, key=lambda g: results[g][0])
                ours.setdefault(f"{name}, best grid", {})[k] = results[best]
                ours[f"{name}, best grid"].setdefault("grids", {})[k] = best  # type: ignore[index]
    if with_diffusers:
        theirs = table.rows.setdefault("diffusers", {})
        for name, cls_name, options in DIFFUSERS_ROWS:
            for k in nfes:
                out, calls = _diffusers_sample(cls_name, options, model, x_T, k, seed)
                theirs.setdefault(name, {})[k] = (sw1(out), calls)
    for rows in table.rows.values():  # move the best-grid names into the row label
        for name in [r for r in rows if "grids" in rows[r]]:
            grids_used = rows[name].pop("grids")
            label = f"{name.split(',')[0]}, best grid ({'/'.join(grids_used[k] for k in nfes)})"
            rows[label] = rows.pop(name)
    return table


def solver_overhead(batch: int = 16, steps: int = 20, repeats: int = 5) -> list[tuple[str, float, float]]:
    """``(pair, diffzoo s/NFE, diffusers s/NFE)`` with a trivial network, interleaved (module docstring)."""
    import diffusers

    from diffzoo.denoisers import Denoiser
    from diffzoo.samplers import SAMPLERS
    from diffzoo.schedules import DiscreteSchedule, linear_betas

    from .harness import interleave, median

    schedule = DiscreteSchedule(linear_betas(T))
    den = Denoiser(lambda x, tau: torch.zeros_like(x), schedule, "eps")
    x_T = torch.randn(batch, 3, 32, 32)
    pairs = [("dpmpp_2m", {}, "DPMSolverMultistepScheduler", dict(use_lu_lambdas=True)),
             ("unipc", {}, "UniPCMultistepScheduler", {}),
             ("dpm_solver", dict(order=3), "DPMSolverSinglestepScheduler", dict(solver_order=3, algorithm_type="dpmsolver", final_sigmas_type="sigma_min")),
             ("edm_euler", {}, "EulerDiscreteScheduler", dict(use_karras_sigmas=True)),
             ("edm_heun", {}, "HeunDiscreteScheduler", dict(use_karras_sigmas=True))]
    out = []
    for ours, opts, cls_name, theirs_opts in pairs:
        def run_ours():
            calls = []
            start = time.perf_counter()
            SAMPLERS[ours](den, x_T, steps, **opts, callback=lambda info: calls.append(info["nfe"]))
            return (time.perf_counter() - start) / calls[-1]

        def run_theirs():
            sched = getattr(diffusers, cls_name)(num_train_timesteps=T, beta_schedule="linear", **theirs_opts)
            start = time.perf_counter()
            sched.set_timesteps((steps + 1) // 2 if "Heun" in cls_name else steps)
            x = x_T * sched.init_noise_sigma
            for t in sched.timesteps:
                x = sched.step(torch.zeros_like(x), t, sched.scale_model_input(x, t)).prev_sample
            return (time.perf_counter() - start) / len(sched.timesteps)

        times = interleave({"ours": run_ours, "theirs": run_theirs}, repeats=repeats)
        out.append((f"{ours} vs {cls_name}", median(times["ours"]), median(times["theirs"])))
    return out


def readme_section(table: SolverTable) -> str:
    """The README sub-section's measured part: goals, the best of each library per NFE, the overhead."""
    lines = [f"Sliced W₁ to {table.n // 1000}k true samples (floor, true vs true: {table.floor:.4f}); best row per library:", "",
             "| NFE | diffzoo best | diffusers best | goal |", "|---|---|---|---|"]
    for k in table.nfes:
        ours, theirs = table.best("diffzoo", k), table.best("diffusers", k)
        if k < 20:
            met = "met" if ours[1] < theirs[1] else f"missed by {ours[1] / theirs[1] - 1:+.0%}"
            goal = f"below diffusers: {met}"
        else:
            met = "met" if ours[1] <= 1.5 * table.floor else f"missed: {ours[1] / table.floor:.1f}× the floor"
            goal = f"at the floor (≤ 1.5× floor): {met}"
        lines.append(f"| {k} | {ours[1]:.4f} ({ours[0]}) | {theirs[1]:.4f} ({theirs[0]}) | {goal} |")
    if table.overhead:
        lines += ["", "| per-step overhead (trivial net, batch 16×3×32×32) | diffzoo / diffusers time |", "|---|---|"]
        lines += [f"| {pair} | {a / b:.2f} |" for pair, a, b in table.overhead]
    return "\n".join(lines)


def run_section(out: Path, n: int = 20000, nfes=NFES, grids=GRID_CHOICES, overhead: dict | None = None) -> SolverTable:
    """The benchmark as ``make bench`` runs it: the table, the overhead, ``<out>/solvers_quality.md`` and the plot."""
    table = solver_quality(n=n, nfes=nfes, grids=grids)
    table.overhead = solver_overhead(**(overhead or {}))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "solvers_quality.md").write_text(table.markdown() + "\n\n" + readme_section(table) + "\n")
    (out / "solvers_quality.json").write_text(json.dumps(table.as_dict(), indent=1))
    table.plot(out / "solvers_quality_per_nfe.png")
    return table


def main(out: str = "benchmarks/results", n: int = 20000) -> SolverTable:
    torch.set_num_threads(1)
    started = time.perf_counter()
    table = run_section(Path(out), n=n)
    print(table.markdown())
    print()
    print(readme_section(table))
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return table


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    main()
