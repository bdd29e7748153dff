"""What ``diffzoo-sample pipeline=<name>`` and ``diffzoo-eval pipeline=<name>`` do. A pipeline config's
``kind`` picks the runner (:data:`PIPELINE_KINDS`): ``cascade`` (the default) or ``unclip``
(:mod:`diffzoo.pipelines.unclip`: prior → decoder, text → image and image variations).

A cascade: load the stages a pipeline config names (``conf/pipeline/*.yaml``: each stage's checkpoint, sampler settings, guidance and
augmentation), draw the cascade through :func:`~diffzoo.pipelines.cascade.run_cascade`, save every
stage's output, and evaluate every stage at its own resolution: FID in the feature space of a classifier
trained on that stage's data (:mod:`diffzoo.metrics.features`), and the Classification Accuracy Score
(:mod:`diffzoo.metrics.cas`) of labelled stages, with the real-data baseline beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ..errors import ConfigError
from ..runtime import device_of, run_dir_of
from .cascade import Stage, check_stages, load_stage, run_cascade
from .unclip import evaluate_unclip, sample_unclip

__all__ = ["load_stages", "draw_pipeline", "sample_pipeline", "evaluate_pipeline", "sample_cascade", "evaluate_cascade",
           "pipeline_kind", "PIPELINE_KINDS", "EVAL_METRICS"]

EVAL_METRICS = ("fid", "cas")


def load_stages(pipeline_cfg: DictConfig, device, use_ema: bool = True) -> list[Stage]:
    """The stages of ``pipeline_cfg.stages`` (a mapping name → ``{ckpt_path, sampler, guidance, aug_level,
    augmentation}``, in order), loaded on ``device`` and checked to chain."""
    stages_cfg = pipeline_cfg.get("stages")
    if not stages_cfg:
        raise ConfigError("pipeline.stages is empty: name the base stage and its super-resolution stages")
    stages = [load_stage(st, f"pipeline.stages.{name}", str(name), device, use_ema) for name, st in stages_cfg.items()]
    check_stages(stages)
    return stages


def _num_classes(stages: list[Stage]) -> int | None:
    from ..guidance.labels import num_classes_of

    return num_classes_of(*[getattr(s.module, "net", None) for s in stages])


def draw_pipeline(stages: list[Stage], n: int, seed: int, batch_size: int, y: Any = None, progress: bool = True,
                  prompts: list[str] | None = None):
    """``n`` cascade samples in batches → ``(outputs {stage: [n, C, H, W]}, labels [n] or None, nfe {stage: k},
    truncated {stage: bool})``; sample ``i`` of every stage depends on ``(seed, i)`` only; text stages get caption
    ``prompts[i mod P]`` (no prompts: the empty caption)."""
    from ..guidance.labels import labels_for_indices
    from ..utils.progress import track

    takes = any(s.takes_labels() for s in stages)
    k = _num_classes(stages)
    outs: dict[str, list] = {s.name: [] for s in stages}
    labels, nfe, truncated = [], {}, {}
    starts = range(0, n, batch_size)
    for start in track(starts, total=len(starts), description="cascade", enabled=progress):
        idx = range(start, min(n, start + batch_size))
        y_b = labels_for_indices(idx, y, k) if takes else None
        captions = [prompts[i % len(prompts)] if prompts else "" for i in idx]
        batch = run_cascade(stages, idx, seed, y_b, captions=captions)
        for name, x in batch.outputs.items():
            outs[name].append(x.cpu())
        labels.append(y_b)
        nfe, truncated = batch.nfe, batch.truncated
    return ({name: torch.cat(v) for name, v in outs.items()}, torch.cat(labels) if takes else None, nfe, truncated)


def _prompts(cfg: DictConfig) -> list[str] | None:
    """``prompt`` (every sample) or ``prompts`` (sample i: prompts[i mod P]) of diffzoo-sample, for text stages."""
    if cfg.get("prompt") is not None:
        return [str(cfg.prompt)]
    prompts = cfg.get("prompts")
    if prompts is not None and (isinstance(prompts, str) or not len(prompts)):
        raise ConfigError(f"prompts={prompts!r} must be a non-empty list of captions")
    return [str(p) for p in prompts] if prompts is not None else None


def _out_dir(cfg: DictConfig, stages: list[Stage], kind: str) -> Path:
    if cfg.get("out"):
        return Path(cfg.out).resolve()
    name = cfg.pipeline.get("name", "pipeline")
    return run_dir_of(stages[-1].info["ckpt_path"]) / kind / f"pipeline_{name}_n{cfg.n}_seed{cfg.seed}"


def sample_cascade(cfg: DictConfig) -> dict[str, Any]:
    """``diffzoo-sample pipeline=<cascade>``: draw ``cfg.n`` cascade samples, write per stage ``<out>/<stage>/grid.png``
    and ``samples.npz`` (uint8 images, labels, a text stage's captions), return a summary."""
    from ..utils.images import save_samples_figure, to_uint8

    if cfg.get("variations") is not None:
        raise ConfigError(f"variations={cfg.variations} makes unCLIP's image variations: use pipeline=unclip (a cascade "
                          "takes no source images)")
    if int(cfg.n) < 1 or int(cfg.batch_size) < 1:
        raise ConfigError(f"n and batch_size must be >= 1, got n={cfg.n}, batch_size={cfg.batch_size}")
    stages = load_stages(cfg.pipeline, device_of(cfg.get("device", "auto")), bool(cfg.use_ema))
    prompts = _prompts(cfg)
    outputs, labels, nfe, truncated = draw_pipeline(stages, int(cfg.n), int(cfg.seed), int(cfg.batch_size), cfg.get("y"),
                                                    prompts=prompts)
    out = _out_dir(cfg, stages, "samples")
    summary: dict[str, Any] = {"out": str(out), "n": int(cfg.n), "stages": {}}
    for st in stages:
        x, folder = outputs[st.name], out / st.name
        folder.mkdir(parents=True, exist_ok=True)
        note = " (truncated chain: z_s)" if truncated[st.name] else ""
        grid = save_samples_figure(x[:256].clamp(-1, 1), folder / "grid.png", title=f"{st.name}{note}, NFE {nfe[st.name]}")
        extra = {"y": labels.numpy()} if labels is not None else {}
        if prompts and st.takes_text():
            extra["text"] = np.array([prompts[i % len(prompts)] for i in range(int(cfg.n))])
        np.savez(folder / "samples.npz", images=to_uint8(x.clamp(-1, 1)).permute(0, 2, 3, 1).numpy(), **extra)
        summary["stages"][st.name] = {"grid": str(grid), "nfe": nfe[st.name], "truncated": truncated[st.name],
                                      "aug_level": st.level if st.upsamples else None, **st.info}
    print("\n".join(f"{k:>10}: {v}" for k, v in summary.items()))
    return summary


def evaluate_cascade(cfg: DictConfig) -> dict[str, Any]:
    """``diffzoo-eval pipeline=<cascade>``: draw ``cfg.n`` cascade samples and score every stage that outputs
    images at its own resolution (``pipeline.eval.metrics``: ``fid`` and / or ``cas``); write ``metrics.json``."""
    from ..utils.io import write_json_atomic
    from .stage_metrics import stage_metrics

    ev = cfg.pipeline.get("eval") or {}
    metrics = list(ev.get("metrics", EVAL_METRICS))
    bad = [m for m in metrics if m not in EVAL_METRICS]
    if bad or not metrics:
        raise ConfigError(f"pipeline.eval.metrics={metrics}: choose from {list(EVAL_METRICS)}")
    stages = load_stages(cfg.pipeline, device_of(cfg.get("accelerator", "auto")), bool(cfg.use_ema))
    outputs, labels, nfe, truncated = draw_pipeline(stages, int(cfg.n), int(cfg.seed), int(cfg.batch_size),
                                                    None, bool(cfg.get("progress", True)))
    ref = cfg.get("reference") or {}
    result: dict[str, Any] = {"pipeline": cfg.pipeline.get("name"), "n": int(cfg.n), "seed": int(cfg.seed), "stages": {}}
    for st in stages:
        row: dict[str, Any] = {"nfe": nfe[st.name], "aug_level": st.level if st.upsamples else None,
                               "augmentation": st.augmentation if st.upsamples else None, **st.info}
        if truncated[st.name]:
            row["skipped"] = "truncated chain: its output is z_s, not an image"
        else:
            row.update(stage_metrics(st, outputs[st.name], labels, metrics, cfg.paths.cache_dir, seed=int(cfg.seed),
                                     reference_split=str(ref.get("split", "train")), reference_n=ref.get("n"),
                                     cas_epochs=int(ev.get("cas_epochs", 10)),
                                     classifier_epochs=ev.get("classifier_epochs")))
        result["stages"][st.name] = row
    out = _out_dir(cfg, stages, "eval")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", result)
    for name, row in result["stages"].items():
        print(name, {k: v for k, v in row.items() if k.startswith(("fid", "cas", "real"))})
    print(f"metrics: {out / 'metrics.json'}")
    return result


# pipeline kind (``pipeline.kind``) → (its diffzoo-sample runner, its diffzoo-eval runner), each taking the composed config
PIPELINE_KINDS = {"cascade": (sample_cascade, evaluate_cascade), "unclip": (sample_unclip, evaluate_unclip)}


def pipeline_kind(cfg: DictConfig) -> str:
    """``cfg.pipeline.kind`` (absent: ``cascade``), checked against :data:`PIPELINE_KINDS`."""
    kind = cfg.pipeline.get("kind", "cascade")
    if kind not in PIPELINE_KINDS:
        raise ConfigError(f"pipeline.kind={kind!r} is not one of {list(PIPELINE_KINDS)}")
    return kind


def sample_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """``diffzoo-sample pipeline=<name>``: the sampling runner of the pipeline's kind (a cascade:
    :func:`sample_cascade`; unCLIP: :func:`~diffzoo.pipelines.unclip.sample_unclip`); returns its summary."""
    return PIPELINE_KINDS[pipeline_kind(cfg)][0](cfg)


def evaluate_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """``diffzoo-eval pipeline=<name>``: the evaluation runner of the pipeline's kind (a cascade:
    :func:`evaluate_cascade`); returns what ``metrics.json`` holds."""
    return PIPELINE_KINDS[pipeline_kind(cfg)][1](cfg)
