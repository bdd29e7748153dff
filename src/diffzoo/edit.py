"""Controllable generation from a score SDE checkpoint: inpainting and colourisation (Score SDE App. I).

    python -m diffzoo.edit ckpt_path=runs/sde_vp_digits/.../checkpoints/last.ckpt task=inpaint mask=center n=16
    python -m diffzoo.edit ckpt_path=... task=inpaint mask=random mask_fraction=0.7 sampler.snr=0.1
    python -m diffzoo.edit ckpt_path=<RGB run>/last.ckpt task=colorize n=16

Takes the first ``n`` images of a data split (quantised to 8 bits, as evaluation sees them),
hides part of each (``inpaint``: a mask; ``colorize``: the colour, keeping the grey level) and
lets the PC sampler conditioned on the known part fill in the rest
(:func:`diffzoo.samplers.inpaint.inpaint` / :func:`~diffzoo.samplers.inpaint.colorize`, EMA
weights by default) — on a Score SDE model, or on a DDPM model through the VP SDE of its β table. Example ``i`` draws its starting noise from generator ``(seed, "x_T", i)``,
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


def _pc_sampler(module, cfg: DictConfig):
    """The PC sampler of the edit: the model's own when it samples with PC (else PC's defaults), with
    the settings of ``cfg.sampler`` (including its NFE budget ``steps``) changed."""
    from .samplers import SamplerSpec

    stored = module.sampler if module.sampler.name == "pc" else SamplerSpec("pc")
    given = {k: v for k, v in OmegaConf.to_container(cfg.sampler, resolve=True).items() if v is not None}
    return stored.with_options(**given)


def _out_dir(cfg: DictConfig) -> Path:
    from .runtime import run_dir_of

    if cfg.get("out"):
        return Path(cfg.out).expanduser().resolve()
    run_dir = run_dir_of(cfg.ckpt_path)
    what = f"inpaint_{cfg.mask}" if cfg.task == "inpaint" else "colorize"
    return run_dir / "edit" / f"{what}_n{cfg.n}_seed{cfg.seed}"


@torch.no_grad()
def edit(cfg: DictConfig) -> dict[str, Any]:
    """Run the edit configured by ``cfg`` (``conf/edit.yaml``); return the output paths and setup."""
    from .denoisers import as_sde_denoiser
    from .lit.build import load_module
    from .metrics.data import instantiate_datamodule, load_split
    from .runtime import device_of
    from .samplers import sample_indices
    from .samplers.inpaint import colorize, inpaint
    from .utils.images import save_image_grid
    from .utils.random import per_sample_generators
    from .validation import validate_entry

    validate_entry("edit", cfg)  # types and ranges of every key, before the checkpoint is read
    if cfg.task not in TASKS:
        raise ConfigError(f"task={cfg.task!r} is not one of {list(TASKS)}")
    if cfg.task == "inpaint" and cfg.mask not in MASKS:
        raise ConfigError(f"mask={cfg.mask!r} is not one of {list(MASKS)}")
    if int(cfg.n) < 1:
        raise ConfigError(f"n must be >= 1, got {cfg.n}")
    if cfg.get("steps") is not None:
        raise ConfigError(f"steps={cfg.steps} was retired: use sampler.steps={cfg.steps} (the NFE budget of the PC sampler)")
    module = load_module(cfg.ckpt_path).to(device_of(cfg.accelerator))
    if not hasattr(module, "denoiser"):
        raise ConfigError(f"{cfg.ckpt_path} holds a {type(module).__name__}: inpainting and colourisation need a diffusion "
                          "or score model")
    denoiser = module.denoiser(bool(cfg.use_ema))
    try:
        as_sde_denoiser(denoiser)
    except ValueError as err:
        raise ConfigError(f"{cfg.ckpt_path}: inpainting / colourisation condition the PC sampler of an SDE (Score SDE "
                          f"App. I): {err}") from None
    spec = _pc_sampler(module, cfg)
    module.check_sampler(spec)
    options = {k: v for k, v in spec.options.items()}

    dm = instantiate_datamodule(module.run_config["data"])
    x = load_split(dm, cfg.split, int(cfg.n)).x
    if x.ndim != 4:
        raise ConfigError(f"{dm.name!r} holds points, not images: nothing to inpaint or colour")
    x = (x.float() / 127.5 - 1).to(module.device)  # the 256 levels of [−1, 1]
    idx = range(x.shape[0])
    if cfg.task == "colorize" and x.shape[1] < 2:
        raise ConfigError(f"task=colorize needs colour images; {dm.name!r} has {x.shape[1]} channel(s) (use task=inpaint)")

    if cfg.task == "inpaint":
        mask = make_mask(cfg.mask, tuple(x.shape), float(cfg.mask_fraction), per_sample_generators(cfg.seed, idx, stream="mask")).to(x.device)
        known = denoiser.from_data(x)
        masked = torch.where(mask, x, torch.zeros_like(x))  # unknown pixels shown as mid-grey

        def run(model, x_T, **kw):
            return inpaint(model, x_T, known, mask, spec.steps, **kw, **options)
    else:
        mask = None
        gray = denoiser.from_data(x).mean(dim=1, keepdim=True)  # Score SDE App. I.3: the grey level is known
        masked = denoiser.to_data(gray).expand_as(x)

        def run(model, x_T, **kw):
            return colorize(model, x_T, gray, spec.steps, **kw, **options)
    # the one sampling loop: example i starts from the prior with generator (seed, "x_T", i), draws from (seed, "steps", i)
    result = sample_indices(denoiser, run, idx, int(cfg.seed), module.data_shape, device=module.device, progress=bool(cfg.progress))
    out, box = result.x, {"nfe": result.nfe}

    target = _out_dir(cfg)
    target.mkdir(parents=True, exist_ok=True)
    grid = save_image_grid(torch.cat([x, masked, out.clamp(-1, 1)]).cpu(), target / "grid.png", nrow=x.shape[0])
    tensors = {"original": x.cpu(), "masked": masked.cpu(), "completed": out.cpu(), "mask": None if mask is None else mask.cpu()}
    torch.save({k: v for k, v in tensors.items() if v is not None}, target / "edit.pt")
    summary = {"task": cfg.task, "mask": cfg.mask if cfg.task == "inpaint" else None, "n": int(x.shape[0]), "nfe": box["nfe"],
               "sampler": spec.describe(), "weights": module.weights_label(bool(cfg.use_ema)), "seed": int(cfg.seed),
               "split": cfg.split, "grid": str(grid), "tensors": str(target / "edit.pt"), "out": str(target)}
    print(f"diffzoo edit: {summary['task']}{'/' + summary['mask'] if summary['mask'] else ''} of {summary['n']} {cfg.split} images "
          f"(PC {spec.describe()['predictor']}/{spec.describe()['corrector']}, NFE {summary['nfe']}, {summary['weights']} weights)\n"
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
