"""Controllable generation from a score SDE checkpoint: inpainting and colourisation (Score SDE App. I).

    python -m diffzoo.edit ckpt_path=runs/sde_vp_digits/.../checkpoints/last.ckpt task=inpaint mask=center n=16
    python -m diffzoo.edit ckpt_path=... task=inpaint mask=random mask_fraction=0.7 sampler.snr=0.1
    python -m diffzoo.edit ckpt_path=<RGB run>/last.ckpt task=colorize n=16

Takes the first ``n`` images of a data split (quantised to 8 bits, as evaluation sees them),
hides part of each (``inpaint``: a mask; ``colorize``: the colour, keeping the grey level) and
lets the PC sampler conditioned on the known part fill in the rest
(:func:`diffzoo.samplers.inpaint.inpaint` / :func:`~diffzoo.samplers.inpaint.colorize`, EMA
weights by default). Example ``i`` draws its starting noise from generator ``(seed, "x_T", i)``,
its sampler noise from ``(seed, "steps", i)`` and its random mask from ``(seed, "mask", i)``.

Writes ``grid.png`` (rows: original / masked / completed) and ``edit.pt`` (the tensors, in
``[−1, 1]``, and the mask) to ``<run_dir>/edit/<task>_<mask>_n<n>_seed<s>/`` (or ``out=``).
``edit(cfg)`` is importable; ``main`` only decorates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from . import config as _config  # noqa: F401  (registers resolvers)
from .errors import ConfigError, run_reporting_errors

__all__ = ["TASKS", "MASKS", "make_mask", "edit", "main"]

TASKS = ("inpaint", "colorize")
MASKS = ("center", "left_half", "random")
PC_OPTIONS = ("predictor", "corrector", "snr", "n_corrector", "eps", "denoise", "step_norm")


def make_mask(kind: str, shape: tuple[int, ...], fraction: float = 0.5, generators=None) -> torch.Tensor:
    """Known-pixel masks ``[B, 1, H, W]`` (bool, true = known) for ``shape = (B, C, H, W)``.

    ``center``: everything but the central square of side H/2 is known; ``left_half``: the left
    half of the columns is known; ``random``: each pixel is unknown with probability ``fraction``,
    drawn per image from its own generator (one per row of ``generators``).
    """
    B, _, H, W = shape
    if kind == "center":
        mask = torch.ones(B, 1, H, W, dtype=torch.bool)
        mask[:, :, H // 4: H // 4 + H // 2, W // 4: W // 4 + W // 2] = False
    elif kind == "left_half":
        mask = torch.zeros(B, 1, H, W, dtype=torch.bool)
        mask[..., : W // 2] = True
    elif kind == "random":
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"mask_fraction={fraction} must lie in (0, 1) (the share of unknown pixels)")
        if generators is None or len(generators) != B:
            raise ValueError("make_mask('random') needs one generator per image")
        mask = torch.stack([torch.rand(1, H, W, generator=g) >= fraction for g in generators])
    else:
        raise ConfigError(f"mask={kind!r} is not one of {list(MASKS)}")
    return mask


def _pc_options(module, cfg: DictConfig) -> dict[str, Any]:
    """The stored PC sampler's options (when the model samples with PC), overridden by ``cfg.sampler``."""
    stored = (module.run_config or {}).get("sampler") or {}
    base = {k: stored[k] for k in PC_OPTIONS if k in stored} if str(stored.get("_target_", "")).endswith(".pc") else {}
    given = {k: v for k, v in OmegaConf.to_container(cfg.sampler, resolve=True).items() if v is not None}
    unknown = sorted(set(given) - set(PC_OPTIONS))
    if unknown:
        raise ConfigError(f"sampler.{unknown[0]} is not a PC sampler option; valid: {list(PC_OPTIONS)}")
    return {**base, **given}


def _out_dir(cfg: DictConfig) -> Path:
    if cfg.get("out"):
        return Path(cfg.out).expanduser().resolve()
    ckpt = Path(cfg.ckpt_path).expanduser().resolve()
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    what = f"inpaint_{cfg.mask}" if cfg.task == "inpaint" else "colorize"
    return run_dir / "edit" / f"{what}_n{cfg.n}_seed{cfg.seed}"


@torch.no_grad()
def edit(cfg: DictConfig) -> dict[str, Any]:
    """Run the edit configured by ``cfg`` (``conf/edit.yaml``); return the output paths and setup."""
    from .evaluate import _device
    from .lit.build import load_module
    from .metrics.data import instantiate_datamodule, load_split
    from .samplers.inpaint import colorize, inpaint
    from .utils.images import save_image_grid
    from .utils.random import per_sample_generators

    if cfg.task not in TASKS:
        raise ConfigError(f"task={cfg.task!r} is not one of {list(TASKS)}")
    if cfg.task == "inpaint" and cfg.mask not in MASKS:
        raise ConfigError(f"mask={cfg.mask!r} is not one of {list(MASKS)}")
    if int(cfg.n) < 1:
        raise ConfigError(f"n must be >= 1, got {cfg.n}")
    module = load_module(cfg.ckpt_path).to(_device(cfg.accelerator))
    sde = module.schedule
    if not hasattr(sde, "marginal_prob") or not hasattr(sde, "prior_logp") or not hasattr(module, "to_model"):
        raise ConfigError(f"{cfg.ckpt_path}: inpainting / colourisation condition the PC sampler of a score SDE model "
                          f"(experiment=sde_*), not a {type(sde).__name__} model")
    if cfg.get("steps"):
        from .lit.score import with_steps

        sde = with_steps(sde, int(cfg.steps))
    options = _pc_options(module, cfg)

    dm = instantiate_datamodule(module.run_config["data"])
    x = load_split(dm, cfg.split, int(cfg.n)).x
    if x.ndim != 4:
        raise ConfigError(f"{dm.name!r} holds points, not images: nothing to inpaint or colour")
    x = (x.float() / 127.5 - 1).to(module.device)  # the 256 levels of [−1, 1]
    idx = range(x.shape[0])
    if cfg.task == "colorize" and x.shape[1] < 2:
        raise ConfigError(f"task=colorize needs colour images; {dm.name!r} has {x.shape[1]} channel(s) (use task=inpaint)")

    x_T = module.prior_sample(len(idx), per_sample_generators(cfg.seed, idx, stream="x_T"))
    gens = per_sample_generators(cfg.seed, idx, stream="steps")
    box = {"nfe": 0}
    common = dict(generator=gens, callback=lambda d: box.__setitem__("nfe", d["nfe"]), progress=bool(cfg.progress), **options)
    score = module.score_fn(bool(cfg.use_ema))
    if cfg.task == "inpaint":
        mask = make_mask(cfg.mask, tuple(x.shape), float(cfg.mask_fraction), per_sample_generators(cfg.seed, idx, stream="mask")).to(x.device)
        out = module.from_model(inpaint(score, sde, x_T, module.to_model(x), mask, **common))
        masked = torch.where(mask, x, torch.zeros_like(x))  # unknown pixels shown as mid-grey
    else:
        mask = None
        gray = module.to_model(x).mean(dim=1, keepdim=True)  # Score SDE App. I.3: the grey level is known
        out = module.from_model(colorize(score, sde, x_T, gray, **common))
        masked = module.from_model(gray).expand_as(x)

    target = _out_dir(cfg)
    target.mkdir(parents=True, exist_ok=True)
    grid = save_image_grid(torch.cat([x, masked, out.clamp(-1, 1)]).cpu(), target / "grid.png", nrow=x.shape[0])
    tensors = {"original": x.cpu(), "masked": masked.cpu(), "completed": out.cpu(), "mask": None if mask is None else mask.cpu()}
    torch.save({k: v for k, v in tensors.items() if v is not None}, target / "edit.pt")
    summary = {"task": cfg.task, "mask": cfg.mask if cfg.task == "inpaint" else None, "n": int(x.shape[0]), "nfe": box["nfe"],
               "sampler": {"steps": sde.N, **options}, "weights": "ema" if cfg.use_ema else "raw", "seed": int(cfg.seed),
               "split": cfg.split, "grid": str(grid), "tensors": str(target / "edit.pt"), "out": str(target)}
    print(f"diffzoo edit: {summary['task']}{'/' + summary['mask'] if summary['mask'] else ''} of {summary['n']} {cfg.split} images "
          f"(PC {options.get('predictor')}/{options.get('corrector')}, N = {sde.N}, NFE {summary['nfe']}, {summary['weights']} weights)\n"
          f"  grid (original / masked / completed): {summary['grid']}\n  tensors: {summary['tensors']}")
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="edit")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(edit, cfg)


def main() -> None:
    """``python -m diffzoo.edit ckpt_path=… task=inpaint|colorize``."""
    _hydra_main()


if __name__ == "__main__":
    main()
