"""``diffzoo-sample``: load a checkpoint, draw N samples, write a PNG grid and an ``.npz``.

    diffzoo-sample ckpt_path=runs/ddpm_digits/.../checkpoints/last.ckpt n=64 seed=0
    diffzoo-sample ckpt_path=... sampler.steps=100                              # the stored sampler, 100 NFE
    diffzoo-sample ckpt_path=... sampler=ddim sampler.steps=50                  # any sampler on any model
    diffzoo-sample ckpt_path=... guidance=cfg guidance.scale=3 y=3             # classifier-free, class 3
    diffzoo-sample ckpt_path=... guidance=classifier guidance.classifier_ckpt=CLS.ckpt guidance.scale=1
    diffzoo-sample ckpt_path=SDE_VP.ckpt guidance=classifier guidance.classifier_ckpt=SDE_CLS.ckpt y=3   # Score SDE eq. 14
    diffzoo-sample ckpt_path=TEXT.ckpt prompt="a bold digit seven" guidance=cfg guidance.scale=2   # a text model
    diffzoo-sample ckpt_path=TEXT.ckpt 'prompts=["a bold digit seven","a thin digit one"]' n=16  # one row per prompt
    diffzoo-sample pipeline=cdm_fashion_mnist pipeline.stages.base8.ckpt_path=B.ckpt ...        # a cascade (docs/cascades.md)
    diffzoo-sample pipeline=unclip pipeline.prior.ckpt_path=P.ckpt pipeline.decoder.ckpt_path=D.ckpt prompt="a bold digit seven"
    diffzoo-sample pipeline=unclip pipeline.decoder.ckpt_path=D.ckpt variations=digits/ n=32  # unCLIP (docs/unclip.md)

A class-conditional model or a guided sampler gets the labels ``y`` (null: one row per class in the
grid, sample i of class i mod K; an int or a list: those classes); ``samples.npz`` holds them too.
A text model gets ``prompt`` (every sample) or ``prompts`` (sample i gets prompt i mod P; the grid has one
row per prompt, labelled); no prompt is the empty caption, the model's unconditional input.

Sample ``i`` is a function of ``(seed, i)`` only (:func:`diffzoo.samplers.sample_indices`: its
starting noise and every later draw come from its own generator), so the same samples come out
whatever ``batch_size`` is, and ``diffzoo-eval`` with the same seed scores these very samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from . import config as _config  # noqa: F401  (registers resolvers)
from .errors import ConfigError, run_reporting_errors

__all__ = ["sample", "main"]


def sample(cfg: DictConfig) -> dict[str, Any]:
    """Draw ``cfg.n`` samples from ``cfg.ckpt_path``; return paths, the sampler and the NFE used."""
    if cfg.get("pipeline") is not None:  # several checkpoints (conf/pipeline/): a cascade or unCLIP, diffzoo.pipelines
        from .pipelines.run import sample_pipeline

        return sample_pipeline(cfg)
    from .guidance.labels import class_grid, labels_for_indices, num_classes_of
    from .runtime import device_of, guidance_from_config, load_for_sampling, run_dir_of
    from .validation import check_retired_keys, validate_entry
    from .samplers import sample_indices
    from .utils.images import save_image_grid, save_samples_figure, to_uint8
    from .utils.progress import track
    from .data.caption_preview import save_prompt_rows

    check_retired_keys(cfg)
    validate_entry("sample", cfg)  # types and ranges of every key, before the checkpoint is read
    if cfg.get("variations") is not None:
        raise ConfigError(f"variations={cfg.variations} makes unCLIP's image variations: use pipeline=unclip with its "
                          "prior and decoder checkpoints, not ckpt_path")
    if int(cfg.n) < 1 or int(cfg.batch_size) < 1:
        raise ConfigError(f"n and batch_size must be >= 1, got n={cfg.n}, batch_size={cfg.batch_size}")
    module, spec = load_for_sampling(cfg.ckpt_path, cfg.get("sampler"), device_of(cfg.device))
    guidance, guidance_name, scale = guidance_from_config(cfg, module, spec)
    denoiser = module.denoiser(bool(cfg.use_ema))
    guided = guidance.wrap(denoiser) if guidance is not None else denoiser
    needs_labels = "y" in guided.cond_keys  # a class model, classifier guidance or CFG on labels; not a text model
    if cfg.get("y") is not None and not needs_labels:
        what = ("the model is unconditional and no guidance is set" if not guided.cond_keys else
                f"this model takes no class labels (it takes {sorted(guided.cond_keys)})")
        raise ConfigError(f"y={cfg.y} is given but {what}; use guidance=classifier (with a noise-aware classifier) or a "
                          "class-conditional model, or leave y=null")
    prompts = _prompts_of(cfg, guided)
    if prompts is None and guidance_name == "clip":
        raise ConfigError("guidance=clip steers towards a caption: give prompt=\"...\" or prompts=[...]")
    num_classes = num_classes_of(getattr(module, "net", None), getattr(guidance, "classifier", None))
    if needs_labels:  # y within the classes (or null with a known class count): one line, before sampling
        try:
            labels_for_indices(range(1), cfg.get("y"), num_classes)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    tag = f"{spec.name}_{guidance_name}{scale:g}" if guidance is not None else spec.name
    out = Path(cfg.out).resolve() if cfg.get("out") else run_dir_of(cfg.ckpt_path) / "samples" / f"{tag}_n{cfg.n}_seed{cfg.seed}"
    out.mkdir(parents=True, exist_ok=True)

    chunks, labels, nfe = [], [], 0
    starts = range(0, int(cfg.n), int(cfg.batch_size))
    for start in track(starts, total=len(starts), description="sampling", enabled=True):
        idx = range(start, min(int(cfg.n), start + int(cfg.batch_size)))
        y = labels_for_indices(idx, cfg.get("y"), num_classes) if needs_labels else None
        cond = {"text": [prompts[i % len(prompts)] for i in idx]} if prompts else None
        batch = sample_indices(denoiser, spec, idx, int(cfg.seed), module.data_shape, device=module.device,
                               guidance=guidance, labels=y, cond=cond)
        nfe = batch.nfe
        chunks.append(batch.x.cpu())
        labels.append(y)
    x = torch.cat(chunks)
    y_all = torch.cat(labels) if needs_labels else None
    title = f"{spec.name}, NFE {nfe}" + (f", {guidance_name} scale {scale:g}" if guidance is not None else "")
    if prompts and x.ndim == 4:
        grid = save_prompt_rows(x[: 8 * len(prompts)], prompts, out / "grid.png")
    elif y_all is not None and x.ndim == 4:
        cells, per_row = class_grid(x[:256], y_all[:256], num_classes or int(y_all.max()) + 1)
        grid = save_image_grid(cells, out / "grid.png", nrow=per_row)
    else:
        grid = save_samples_figure(x[:256], out / "grid.png", title=title)
    extra = {"y": y_all.numpy()} if y_all is not None else {}
    if prompts:
        extra["text"] = np.array([prompts[i % len(prompts)] for i in range(int(cfg.n))])
    if x.ndim == 4:
        np.savez(out / "samples.npz", images=to_uint8(x).permute(0, 2, 3, 1).numpy(), **extra)
    else:
        np.savez(out / "samples.npz", points=x.numpy(), **extra)
    summary = {"out": str(out), "grid": str(grid), "npz": str(out / "samples.npz"), "n": int(cfg.n), "nfe": nfe,
               "sampler": spec.name, "sampler_options": spec.describe(), "weights": module.weights_label(bool(cfg.use_ema))}
    if guidance is not None:
        summary.update(guidance=guidance_name, guidance_scale=scale)
    print("\n".join(f"{k:>15}: {v}" for k, v in summary.items()))
    return summary


def _prompts_of(cfg: DictConfig, denoiser) -> list[str] | None:
    """The captions of ``prompt`` / ``prompts`` (None: neither given), refused for a model without text."""
    prompt, prompts = cfg.get("prompt"), cfg.get("prompts")
    if prompt is None and prompts is None:
        return None
    if prompt is not None and prompts is not None:
        raise ConfigError("give prompt=... (every sample) or prompts=[...] (one row each), not both")
    if "text" not in denoiser.cond_keys:
        raise ConfigError(f"{'prompt' if prompt is not None else 'prompts'} is given but this model takes no text (it takes "
                          f"{sorted(denoiser.cond_keys) or 'no condition'}); use a text model (experiment=text_digits, "
                          "glide_digits, imagen_digits) or leave it unset")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt={prompt!r} must be one caption (a string); for several use prompts=[...]")
        return [prompt]
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or len(prompts) == 0:
        raise ConfigError(f"prompts={prompts!r} must be a non-empty list of captions, e.g. 'prompts=[\"a bold digit seven\",\"a thin digit one\"]'")
    return [str(p) for p in prompts]


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(sample, cfg)


def main() -> None:
    """Console entry point ``diffzoo-sample``."""
    _hydra_main()


if __name__ == "__main__":
    main()
