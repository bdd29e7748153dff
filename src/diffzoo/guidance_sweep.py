"""The guidance-scale sweep: sample quality against diversity as the guidance scale grows.

    python -m diffzoo.guidance_sweep ckpt_path=RUN/checkpoints/last.ckpt guidance=cfg \\
        --multirun guidance.scale=0,0.5,1,2,4
    python -m diffzoo.guidance_sweep ckpt_path=... guidance=classifier \\
        guidance.classifier_ckpt=CLS.ckpt --multirun guidance.scale=0,1,3,10

Each job draws ``n`` class-conditional samples at one scale through the one sampling loop (sample
``i`` has class ``i mod K``, the model's prior and the noise of ``(seed, i)``, exactly as
``diffzoo-sample`` draws it), computes FID and IS in the data set's
feature space (Inception for RGB ≥ 32 px, the data set's own classifier for digits /
Fashion-MNIST) and the *target accuracy* — how often the feature classifier assigns a sample to
its target class — and writes ``<sweep_dir>/scale_<s>.json``. After every job the trade-off table
(``tradeoff.md``, ``tradeoff.json``) and plot (``tradeoff.png``: FID against IS, and FID against
target accuracy, one point per scale) are rebuilt from all the jobs' files, so the last job of
a multirun leaves the whole curve (Dhariwal & Nichol 2021, Fig. 4; Ho & Salimans 2022, Fig. 4).
One process per job; ``sweep(cfg)`` is importable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from . import config as _config  # noqa: F401  (registers resolvers)
from .errors import ConfigError, run_reporting_errors

__all__ = ["sweep", "write_tradeoff", "main"]


def _sweep_dir(cfg: DictConfig, sampler: str, guidance: str) -> Path:
    from .runtime import run_dir_of

    if cfg.get("sweep_dir"):
        return Path(cfg.sweep_dir).expanduser().resolve()
    return run_dir_of(cfg.ckpt_path) / "guidance_sweep" / f"{guidance}_{sampler}_n{cfg.n}_seed{cfg.seed}"


def sweep(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` guided by ``cfg.guidance`` at ``cfg.guidance.scale``; write this
    scale's JSON and rebuild the trade-off table and plot. Returns this scale's record."""
    from .guidance import NoGuidance
    from .guidance.labels import labels_for_indices, num_classes_of
    from .metrics.backends import get_backend
    from .metrics.distributed import draw_samples
    from .metrics.naming import metric_name
    from .metrics.pipeline import EvalSetup, precision_recall_vs_reference, prepare_evaluation
    from .runtime import device_of, guidance_from_config, load_for_sampling
    from .validation import check_retired_keys, validate_entry
    from .utils.images import to_uint8
    from .utils.io import write_json_atomic

    check_retired_keys(cfg)
    validate_entry("guidance_sweep", cfg)  # types and ranges of every key, before the checkpoint is read
    if not cfg.get("guidance"):
        raise ConfigError("the sweep needs guidance=cfg or guidance=classifier (and --multirun guidance.scale=...)")
    module, spec = load_for_sampling(cfg.ckpt_path, cfg.get("sampler"), device_of(cfg.device))
    guidance, name, scale = guidance_from_config(cfg, module, spec)
    if guidance is None:  # guidance=none: the conditional model itself, scale 0
        guidance, name, scale = NoGuidance(), "none", 0.0
    setup = EvalSetup(n=int(cfg.n), metrics=tuple(cfg.metrics), seed=int(cfg.seed), batch_size=int(cfg.batch_size),
                      extractor=cfg.extractor, backend=cfg.backend, reference_split=cfg.reference.split, sampler=spec,
                      reference_n=cfg.reference.n, is_splits=int(cfg.is_splits), classifier_epochs=cfg.classifier.epochs)
    inputs = prepare_evaluation(module.data_shape, module.run_config["data"], setup, cfg.paths.cache_dir, module.device)
    if inputs.extractor is None:
        raise ConfigError("the guidance sweep measures image samples; this model's data are points")

    try:  # y within the classes (or null with a known class count): one line, before sampling
        labels_for_indices(range(1), cfg.get("y"), num_classes_of(getattr(module, "net", None), getattr(guidance, "classifier", None)))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    feats, logits, labels, nfe = [], [], [], 0
    batches = draw_samples(module, setup.n, setup.seed, setup.batch_size, bool(cfg.use_ema), progress=bool(cfg.progress),
                           sampler=spec, guidance=guidance, y=cfg.get("y"))
    for batch in batches:
        nfe = max(nfe, batch.nfe)
        out = inputs.extractor(to_uint8(batch.x))
        feats.append(out.features.float().cpu())
        logits.append(out.logits.float().cpu())
        labels.append(batch.labels.cpu())
    features, logits_all, y_all = torch.cat(feats), torch.cat(logits), torch.cat(labels)

    backend, space = get_backend(setup.backend), inputs.extractor.space
    sampler = spec.name
    record: dict[str, Any] = {"guidance": name, "scale": scale, "n": setup.n, "nfe": nfe, "sampler": sampler,
                              "sampler_options": spec.describe(), "weights": module.weights_label(bool(cfg.use_ema)),
                              "seed": setup.seed, "feature_space": space, "extractor": inputs.extractor.identity,
                              "ckpt_path": str(Path(cfg.ckpt_path).expanduser().resolve())}
    for m in inputs.metrics:
        key = metric_name(m, setup.n, space)
        if m == "fid":
            record[key] = backend.fid(features, inputs.reference)
        elif m == "kid":
            record[key] = backend.kid(features, inputs.reference, 100, min(1000, setup.n), setup.seed).mean
        elif m == "is":
            record[key] = backend.inception_score(logits_all, min(setup.is_splits, setup.n)).mean
        elif m == "precision_recall":  # two numbers: precision_<space><n>, recall_<space><n>
            values, _ = precision_recall_vs_reference(features, inputs.reference, setup.pr_k, setup.seed, module.device)
            record.update({metric_name(m, setup.n, space, part=p): v for p, v in values.items()})
    if space != "inception":  # the data set's own classifier: its classes are the model's classes
        record["target_accuracy"] = float((logits_all.argmax(-1) == y_all).float().mean())
    out_dir = _sweep_dir(cfg, sampler, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / f"scale_{scale:g}.json", record)
    table = write_tradeoff(out_dir)
    print(f"{name} scale {scale:g}: " + ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float) and k != "scale"))
    print(f"trade-off so far ({len(table)} scales): {out_dir / 'tradeoff.md'}")
    return record


def write_tradeoff(sweep_dir) -> list[dict[str, Any]]:
    """Collect ``scale_*.json`` under ``sweep_dir`` into ``tradeoff.json``, a markdown table
    ``tradeoff.md`` and ``tradeoff.png`` (FID vs IS and FID vs target accuracy); returns the rows
    sorted by scale."""
    from .utils.io import write_json_atomic

    sweep_dir = Path(sweep_dir)
    rows = sorted((json.loads(p.read_text()) for p in sweep_dir.glob("scale_*.json")), key=lambda r: r["scale"])
    if not rows:
        return rows
    metric_keys = [k for k in rows[0] if k.startswith(("fid", "is", "kid", "precision", "recall")) and isinstance(rows[0][k], (int, float))]
    if "target_accuracy" in rows[0]:
        metric_keys.append("target_accuracy")
    write_json_atomic(sweep_dir / "tradeoff.json", {"rows": rows})
    head = f"Guidance sweep: {rows[0]['guidance']} guidance, {rows[0]['sampler']} (NFE {rows[0]['nfe']}), n = {rows[0]['n']}, " \
           f"feature space {rows[0]['feature_space']}\n\n"
    lines = ["| scale | " + " | ".join(metric_keys) + " |", "|---|" + "---|" * len(metric_keys)]
    for r in rows:
        lines.append(f"| {r['scale']:g} | " + " | ".join(_fmt(r.get(k)) for k in metric_keys) + " |")
    tmp = sweep_dir / "tradeoff.md.tmp"
    tmp.write_text(head + "\n".join(lines) + "\n")
    tmp.replace(sweep_dir / "tradeoff.md")
    _plot(rows, metric_keys, sweep_dir / "tradeoff.png")
    return rows


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _plot(rows: list[dict], keys: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fid = next((k for k in keys if k.startswith("fid")), None)
    others = [k for k in keys if k != fid and (k.startswith("is") or k == "target_accuracy")]
    if fid is None or not others:
        return
    fig, axes = plt.subplots(1, len(others), figsize=(4.5 * len(others), 4), squeeze=False)
    for ax, other in zip(axes[0], others):
        xs, ys = [r.get(other) for r in rows], [r.get(fid) for r in rows]
        ax.plot(xs, ys, "o-")
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(f"{r['scale']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(other)
        ax.set_ylabel(fid)
        ax.set_title(f"{rows[0]['guidance']} guidance: {fid} vs {other}")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


@hydra.main(version_base="1.3", config_path="conf", config_name="guidance_sweep")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(sweep, cfg)


def main() -> None:
    """``python -m diffzoo.guidance_sweep``."""
    _hydra_main()


if __name__ == "__main__":
    main()
