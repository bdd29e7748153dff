"""``diffzoo-sample``: load a checkpoint, draw N samples, write a PNG grid and an ``.npz``.

    diffzoo-sample ckpt_path=runs/ddpm_digits/.../checkpoints/last.ckpt n=64 seed=0
    diffzoo-sample ckpt_path=... sampler=ddpm sampler.variance=fixedsmall out=my_samples
    diffzoo-sample ckpt_path=... guidance=cfg guidance.scale=3 y=3             # classifier-free, class 3
    diffzoo-sample ckpt_path=... guidance=classifier guidance.classifier_ckpt=CLS.ckpt guidance.scale=1
    diffzoo-sample ckpt_path=SDE_VP.ckpt guidance=classifier guidance.classifier_ckpt=SDE_CLS.ckpt y=3   # Score SDE eq. 14

A class-conditional model or a guided sampler gets the labels ``y`` (null: one row per class in the
grid, sample i of class i mod K; an int or a list: those classes); ``samples.npz`` holds them too.

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
    from .guidance.labels import class_grid, labels_for_indices, num_classes_of
    from .utils.images import save_image_grid, save_samples_figure, to_uint8
    from .utils.random import per_sample_generators, randn

    overrides = {"sampler": OmegaConf.to_container(cfg.sampler)} if cfg.get("sampler") else None
    module = load_module(cfg.ckpt_path, overrides=overrides).to(_device(cfg.device))
    sampler_name = module.run_config["sampler"]["_target_"].rsplit(".", 1)[-1]
    ckpt = Path(cfg.ckpt_path).resolve()
    default_out = ckpt.parent.parent / "samples" / f"{sampler_name}_n{cfg.n}_seed{cfg.seed}"
    guidance, guidance_name, scale = _guidance(cfg, module)
    num_classes = num_classes_of(getattr(module, "net", None), getattr(guidance, "classifier", None))
    needs_labels = guidance is not None or bool(getattr(module, "conditional", False))
    if guidance is not None:
        default_out = default_out.with_name(f"{sampler_name}_{guidance_name}{scale:g}_n{cfg.n}_seed{cfg.seed}")
    out = Path(cfg.out).resolve() if cfg.get("out") else default_out
    out.mkdir(parents=True, exist_ok=True)

    steps = int(cfg.respace) if cfg.get("respace") else None
    chunks, labels, nfe = [], [], 0
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
        y = labels_for_indices(idx, cfg.get("y"), num_classes).to(module.device) if needs_labels else None
        labels.append(y.cpu() if y is not None else None)
        kwargs = {k: v for k, v in (("y", y), ("guidance", guidance)) if v is not None}
        x = module.sample(x_T=x_T.to(module.device), generator=gens, use_ema=cfg.use_ema, steps=steps,
                          callback=lambda d: box.__setitem__("nfe", d["nfe"]), **kwargs)
        nfe = box.get("nfe", 0)
        chunks.append(x.cpu())
    x = torch.cat(chunks)
    y_all = torch.cat(labels) if needs_labels else None
    title = f"{sampler_name}, NFE {nfe}" + (f", {guidance_name} scale {scale:g}" if guidance is not None else "")
    if y_all is not None and x.ndim == 4:
        cells, per_row = class_grid(x[:256], y_all[:256], num_classes or int(y_all.max()) + 1)
        grid = save_image_grid(cells, out / "grid.png", nrow=per_row)
    else:
        grid = save_samples_figure(x[:256], out / "grid.png", title=title)
    extra = {"y": y_all.numpy()} if y_all is not None else {}
    if x.ndim == 4:
        np.savez(out / "samples.npz", images=to_uint8(x).permute(0, 2, 3, 1).numpy(), **extra)
    else:
        np.savez(out / "samples.npz", points=x.numpy(), **extra)
    summary = {"out": str(out), "grid": str(grid), "npz": str(out / "samples.npz"), "n": cfg.n, "nfe": nfe,
               "sampler": sampler_name, "weights": "ema" if cfg.use_ema else "raw"}
    if guidance is not None:
        summary.update(guidance=guidance_name, guidance_scale=scale)
    print("\n".join(f"{k:>8}: {v}" for k, v in summary.items()))
    return summary


def _guidance(cfg: DictConfig, module) -> tuple[Any, str | None, float | None]:
    """Instantiate ``cfg.guidance`` (``None`` when absent / ``guidance=none``) on the module's device;
    a classifier guidance with ``variance: null`` takes the ancestral sampler's variance."""
    if not cfg.get("guidance"):
        return None, None, None
    from hydra.utils import instantiate

    from .errors import ConfigError
    from .guidance import NoGuidance
    from .guidance.score import check_guidance_fits

    missing = [k for k in cfg.guidance if OmegaConf.is_missing(cfg.guidance, k)]
    if missing:
        raise ConfigError(f"guidance.{missing[0]} must be set, e.g. guidance.classifier_ckpt=PATH (a checkpoint of "
                          "diffzoo-train experiment=adm_classifier_<data>)")
    gcfg = OmegaConf.to_container(cfg.guidance, resolve=True)
    if "variance" in gcfg and gcfg["variance"] is None:
        sampler_cfg = OmegaConf.to_container(cfg.sampler) if cfg.get("sampler") else module.run_config.get("sampler") or {}
        gcfg["variance"] = sampler_cfg.get("variance") or "fixedlarge"
    guidance = instantiate(gcfg)
    if isinstance(guidance, NoGuidance):
        return None, None, None
    check_guidance_fits(guidance, module)  # Score SDE models take a continuous-time classifier, the others not
    return guidance.to(module.device), getattr(guidance, "name", type(guidance).__name__), float(guidance.scale)


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(sample, cfg)


def main() -> None:
    """Console entry point ``diffzoo-sample``."""
    _hydra_main()


if __name__ == "__main__":
    main()
