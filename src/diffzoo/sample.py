"""``diffzoo-sample``: load a checkpoint, draw N samples, write a PNG grid and an ``.npz``.

    diffzoo-sample ckpt_path=runs/ddpm_digits/.../checkpoints/last.ckpt n=64 seed=0
    diffzoo-sample ckpt_path=... sampler=ddpm sampler.variance=fixedsmall out=my_samples

Sample ``i`` is a function of ``(seed, i)`` only (its starting noise and every later draw come
from its own generator), so the same samples come out whatever ``batch_size`` is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import config as _config  # noqa: F401  (registers resolvers)
from .errors import run_reporting_errors

__all__ = ["sample", "main"]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sample(cfg: DictConfig) -> dict[str, Any]:
    """Draw ``cfg.n`` samples from ``cfg.ckpt_path``; return paths and the NFE used."""
    from .lit.build import load_module
    from .utils.images import save_samples_figure, to_uint8
    from .utils.random import per_sample_generators, randn

    overrides = {"sampler": OmegaConf.to_container(cfg.sampler)} if cfg.get("sampler") else None
    module = load_module(cfg.ckpt_path, overrides=overrides).to(_device(cfg.device))
    sampler_name = module.run_config["sampler"]["_target_"].rsplit(".", 1)[-1]
    ckpt = Path(cfg.ckpt_path).resolve()
    default_out = ckpt.parent.parent / "samples" / f"{sampler_name}_n{cfg.n}_seed{cfg.seed}"
    out = Path(cfg.out).resolve() if cfg.get("out") else default_out
    out.mkdir(parents=True, exist_ok=True)

    steps = int(cfg.respace) if cfg.get("respace") else None
    chunks, nfe = [], 0
    from .utils.progress import track

    starts = range(0, cfg.n, cfg.batch_size)
    for start in track(starts, total=len(starts), description="sampling", enabled=True):
        idx = range(start, min(cfg.n, start + cfg.batch_size))
        x_gens = per_sample_generators(cfg.seed, idx, stream="x_T")
        if hasattr(module, "prior_sample"):  # the model's own prior (VE: N(0, σ_max²); NCSN: uniform)
            x_T = module.prior_sample(len(x_gens), x_gens)
        else:
            x_T = torch.stack([randn((1, *module.data_shape), [g])[0] for g in x_gens])
        gens = per_sample_generators(cfg.seed, idx, stream="steps")
        box = {}
        x = module.sample(x_T=x_T.to(module.device), generator=gens, use_ema=cfg.use_ema, steps=steps, callback=lambda d: box.__setitem__("nfe", d["nfe"]))
        nfe = box.get("nfe", 0)
        chunks.append(x.cpu())
    x = torch.cat(chunks)
    grid = save_samples_figure(x[:256], out / "grid.png", title=f"{sampler_name}, NFE {nfe}")
    if x.ndim == 4:
        np.savez(out / "samples.npz", images=to_uint8(x).permute(0, 2, 3, 1).numpy())
    else:
        np.savez(out / "samples.npz", points=x.numpy())
    summary = {"out": str(out), "grid": str(grid), "npz": str(out / "samples.npz"), "n": cfg.n, "nfe": nfe,
               "sampler": sampler_name, "weights": "ema" if cfg.use_ema else "raw"}
    print("\n".join(f"{k:>8}: {v}" for k, v in summary.items()))
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(sample, cfg)


def main() -> None:
    """Console entry point ``diffzoo-sample``."""
    _hydra_main()


if __name__ == "__main__":
    main()
