"""Quality per network evaluation, with no training: every sampler driven by the *exact* ε / score
of a 2-D Gaussian mixture (eight Gaussians on a circle, std 0.1), at NFE 5, 10, 20, 50. The
distance is the sliced Wasserstein distance SW₂ between 4000 samples and 4000 draws of the true
mixture; the "true vs true" row is the floor that finite samples allow.

Samplers and what fixes their NFE:
* DDPM ancestral (σ² = β and σ² = β̃), respaced to K steps (Improved DDPM §4): K calls;
* DDIM with η = 0 and η = 1 over K steps (DDIM eq. 12): K calls;
* Score SDE predictor-corrector on the VP SDE discretised with N steps (Alg. 1; the final
  denoising step reuses the last score): reverse diffusion and Euler–Maruyama predictors without
  corrector (N = K), and the reverse-diffusion + Langevin pair (N = K / 2). The reverse-diffusion
  predictor uses the discrete β_i = β(t_i)/N of the VP discretisation (Score SDE eq. 19 / App. E),
  which exceed 1 for N < β_max = 20: √(1 − β_i) is then undefined and the row shows nan, as the
  official code would;
* annealed Langevin (NCSN Alg. 1) over a geometric σ ladder 3 → 0.01 of K − 1 levels, one step per
  level, step size ε σ_i²/σ_L² with ε = σ_L²(1 − γ²)/2 (γ the ladder ratio) so that each step
  matches one reverse-diffusion step of the VE SDE in variance, + 1 denoising call;
* the probability-flow ODE (Score SDE eq. 13) with RK45 — adaptive, so its NFE is set by the
  tolerance: each row reports the NFE it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["QualityTable", "quality_per_nfe"]

NFES = (5, 10, 20, 50)
T = 1000


class _Counting:
    """Wraps a model function and counts its calls (the sampler-independent NFE)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.fn(x, t)


@dataclass
class QualityTable:
    """``rows[sampler] = {target NFE: (SW₂, NFE actually used)}``; ``floor`` = SW₂(true, true)."""

    rows: dict[str, dict[int, tuple[float, int]]] = field(default_factory=dict)
    floor: float = 0.0
    n: int = 0

    def as_dict(self) -> dict:
        return {"n": self.n, "floor_sw2": self.floor,
                "rows": {k: {str(nfe): {"sw2": v[0], "nfe": v[1]} for nfe, v in r.items()} for k, r in self.rows.items()}}

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Quality per NFE — exact ε of an 8-Gaussian mixture; SW₂ to the truth (n={self.n}; lower is better)",
                      title_justify="left")
        table.add_column("sampler")
        for nfe in NFES:
            table.add_column(f"NFE {nfe}", justify="right")
        for name, row in self.rows.items():
            cells = []
            for nfe in NFES:
                if nfe not in row:
                    cells.append("—")
                    continue
                sw, used = row[nfe]
                cells.append(f"{sw:.4f}" + ("" if used == nfe else f" ({used})"))
            table.add_row(name, *cells)
        table.add_row("true vs true (floor)", *[f"{self.floor:.4f}"] * len(NFES))
        Console().print(table)
        Console().print("  [dim](k) = the NFE the sampler actually used, where it differs from the column[/dim]")

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for name, row in self.rows.items():
            pts = sorted(row.values(), key=lambda v: v[1])
            ax.plot([p[1] for p in pts], [p[0] for p in pts], marker="o", label=name)
        ax.axhline(self.floor, color="k", linestyle=":", label="true vs true")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([5, 10, 20, 50, 100], labels=["5", "10", "20", "50", "100"])
        ax.minorticks_off()
        ax.set_xlabel("network evaluations (NFE)")
        ax.set_ylabel("sliced Wasserstein-2 to the true mixture")
        ax.set_title("Samplers with the exact ε of an 8-Gaussian mixture")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def quality_per_nfe(n: int = 4000, seed: int = 0, nfes=NFES, with_ode: bool = True) -> QualityTable:
    """Run every sampler at every NFE in ``nfes`` with the exact mixture model."""
    from diffzoo.data.toy2d import EightGaussians
    from diffzoo.metrics.toy import sliced_wasserstein
    from diffzoo.samplers import annealed_langevin, ddim, ddpm, pc, probability_flow_ode
    from diffzoo.schedules import DiscreteSchedule, VPSDE, linear_betas
    from diffzoo.schedules.discrete import spaced_timesteps

    mix = EightGaussians(std=0.1)
    schedule = DiscreteSchedule(linear_betas(T))
    abar = schedule.alphas_cumprod

    def exact_eps(x, t):  # ε(x_t, t) = −σ_t ∇log p_t(x_t) for x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (DDPM eq. 4)
        a = abar.to(x.device)[t]
        return mix.eps(x, a.sqrt(), (1 - a).sqrt()).to(x.dtype)

    def sw(samples):
        return sliced_wasserstein(samples.double(), truth, n_projections=256, generator=torch.Generator().manual_seed(seed))

    truth = mix.sample(n, generator=torch.Generator().manual_seed(seed + 1)).double()
    table = QualityTable(n=n, floor=sliced_wasserstein(mix.sample(n, generator=torch.Generator().manual_seed(seed + 2)).double(),
                                                       truth, n_projections=256, generator=torch.Generator().manual_seed(seed)))

    def run(name, nfe, draw):
        model = _Counting(exact_eps)
        gen = torch.Generator().manual_seed(seed)
        x_T = torch.randn(n, 2, generator=gen)
        out = draw(model, x_T, gen)
        table.rows.setdefault(name, {})[nfe] = (sw(out), model.calls)

    def vp_score(sde):
        def score(x, t):  # ∇log p_t(x) of the mixture under the VP SDE's marginal (Score SDE eq. 33)
            return mix.score(x, sde.alpha(t), sde.sigma(t)).to(x.dtype)
        return score

    for K in nfes:
        respaced = schedule.respace(spaced_timesteps(T, K, "even"))
        run("DDPM σ²=β", K, lambda m, x, g: ddpm(m, respaced, x, variance="fixedlarge", clip_x0=False, generator=g))
        run("DDPM σ²=β̃", K, lambda m, x, g: ddpm(m, respaced, x, variance="fixedsmall", clip_x0=False, generator=g))
        run("DDIM η=0", K, lambda m, x, g: ddim(m, schedule, x, steps=K, eta=0.0, generator=g))
        run("DDIM η=1", K, lambda m, x, g: ddim(m, schedule, x, steps=K, eta=1.0, generator=g))

        def pc_draw(predictor, corrector, N):
            sde = VPSDE(N=N)

            def draw(m, x, g):
                score = vp_score(sde)
                counted = _Counting(score)
                # batch-mean corrector norms, as the reference code: in 2-D the per-sample ratio is too noisy
                out = pc(counted, sde, x, predictor=predictor, corrector=corrector, denoise=True, step_norm="batch", generator=g)
                m.calls = counted.calls
                return out
            return draw

        run("PC reverse diffusion", K, pc_draw("reverse_diffusion", "none", K))
        run("PC Euler–Maruyama", K, pc_draw("euler_maruyama", "none", K))
        run("PC reverse diffusion + Langevin", K, pc_draw("reverse_diffusion", "langevin", max(1, K // 2)))

        levels = K - 1
        sigmas = torch.exp(torch.linspace(math.log(3.0), math.log(0.01), levels))
        gamma = float(sigmas[1] / sigmas[0]) if levels > 1 else 0.0
        step_lr = float(sigmas[-1]) ** 2 * (1 - gamma**2) / 2

        def langevin_draw(m, x, g):
            def score(xx, sigma):  # exact ∇log of the mixture convolved with N(0, σ²I)
                m.calls += 1
                return mix.score(xx, 1.0, sigma).to(xx.dtype)
            return annealed_langevin(score, sigmas, 3.0 * x, n_steps_each=1, step_lr=step_lr, denoise=True, generator=g)

        run("annealed Langevin", K, langevin_draw)

    if with_ode:
        sde = VPSDE()
        for nfe_slot, tol in zip(nfes, (1e-1, 3e-2, 1e-2, 1e-3)):
            def ode_draw(m, x, g, tol=tol):
                counted = _Counting(vp_score(sde))
                out = probability_flow_ode(counted, sde, x, rtol=tol, atol=tol, generator=g)
                m.calls = counted.calls
                return out
            run("probability-flow ODE (RK45)", nfe_slot, ode_draw)
    return table
