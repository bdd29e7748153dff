"""``diffzoo-eval``: draw exactly N samples from a checkpoint and compute its metrics.

    diffzoo-eval ckpt_path=runs/ddpm_digits/.../checkpoints/last.ckpt n=2000 sampler.steps=100
    diffzoo-eval ckpt_path=... n=50000 metrics=[fid,is] devices=8          # → fid50k, is50k
    diffzoo-eval ckpt_path=... n=10000 metrics=[fid,precision_recall]      # → fid10k, precision10k, recall10k (k = 3)
    diffzoo-eval ckpt_path=<score SDE run>/last.ckpt metrics=[nll_ode] nll.n=256   # → nll_ode_val256 (bits/dim)
    diffzoo-eval ckpt_path=<DDPM run>/last.ckpt metrics=[nll_vlb,fid]              # the discrete variational bound
    torchrun --nproc_per_node=8 -m diffzoo.evaluate ckpt_path=... n=50000 devices=8

Sample ``i`` depends only on ``(seed, i)`` (the scheme of ``diffzoo-sample``), each process draws
whole global batches of indices, features are gathered and counted, so 1 or 8 processes give the
same samples and the same numbers. Discrete-time models (``DiffusionModule``) and score models
(``ScoreModule``) both work with any sampler that fits their forward process (``sampler=ddpm | ddim
| pc | ode | annealed_langevin``); ``sampler.steps`` is the NFE budget of every sampler and every
record carries the sampler's settings and the NFE.
Writes ``metrics.json`` (atomically) and a grid PNG to
``<run_dir>/eval/<sampler>_steps<k>_n<n>_seed<s>_<ema|raw>/`` (or ``out=``) and prints a summary.
``evaluate(cfg)`` is importable; ``main`` only decorates it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from . import config as _config  # noqa: F401  (registers resolvers)
from .errors import ConfigError, run_reporting_errors

__all__ = ["evaluate", "main"]


def _validate(cfg: DictConfig) -> None:
    """Closed-set options, checked before anything is loaded (one message naming key and values)."""
    from .validation import check_retired_keys, validate_entry

    check_retired_keys(cfg)
    validate_entry("eval", cfg)  # types and ranges of every key, before the checkpoint is read
    from .metrics.backends import BACKENDS
    from .metrics.data import SPLITS
    from .metrics.distributed import SHARD_MODES
    from .metrics.features import EXTRACTOR_KINDS
    from .metrics.naming import METRICS

    choices = {"extractor": EXTRACTOR_KINDS, "backend": BACKENDS, "shard": SHARD_MODES, "reference.split": SPLITS}
    for key, allowed in choices.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}")
    from .metrics.likelihood_eval import LikelihoodSetup

    try:
        LikelihoodSetup(**OmegaConf.to_container(cfg.nll, resolve=True))
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    unknown = [m for m in cfg.metrics if m not in METRICS]
    if unknown or not cfg.metrics:
        raise ConfigError(f"metrics={list(cfg.metrics)}: {unknown or 'empty'}; choose from {list(METRICS)}")
    if int(cfg.n) < 2 or int(cfg.batch_size) < 1:
        raise ConfigError(f"n must be >= 2 and batch_size >= 1, got n={cfg.n}, batch_size={cfg.batch_size}")
    k = int(cfg.precision_recall.k)
    if k < 1 or ("precision_recall" in cfg.metrics and int(cfg.n) <= k):
        raise ConfigError(f"precision_recall.k must be >= 1 and below n, got precision_recall.k={k}, n={cfg.n}")


def _start_processes(cfg: DictConfig):
    """Lightning Fabric for ``devices > 1`` or a torchrun launch (it initialises the process group
    the metrics gather over); ``None`` for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    devices = int(os.environ.get("LOCAL_WORLD_SIZE", cfg.devices)) if world > 1 else int(cfg.devices)
    if world == 1 and devices == 1:
        return None
    import lightning as L

    fabric = L.Fabric(accelerator=cfg.accelerator, devices=devices, num_nodes=max(1, world // devices), strategy="ddp")
    fabric.launch()
    return fabric


def _out_dir(cfg: DictConfig, info: dict) -> Path:
    if cfg.get("out"):
        return Path(cfg.out).expanduser().resolve()
    from .runtime import run_dir_of

    run_dir = run_dir_of(cfg.ckpt_path)
    weights = info["weights"]
    if not info.get("sampled", True):  # likelihood metrics only: no sampler involved
        return run_dir / "eval" / f"nll_{cfg.nll.split}_n{cfg.nll.n}_seed{cfg.seed}_{weights}"
    steps = "adaptive" if info["steps"] is None else info["steps"]
    return run_dir / "eval" / f"{info['sampler']}_steps{steps}_n{cfg.n}_seed{cfg.seed}_{weights}"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` as configured (``conf/eval.yaml``); return what ``metrics.json``
    holds (on every process; only rank 0 writes files)."""
    if cfg.get("pipeline") is not None:  # a cascade of checkpoints (conf/pipeline/): every stage scored
        from .pipelines.run import evaluate_pipeline

        return evaluate_pipeline(cfg)
    _validate(cfg)
    fabric = _start_processes(cfg)
    import torch.distributed as dist

    try:
        summary = _evaluate(cfg, fabric)
        if fabric is not None:
            dist.barrier()  # every process stays until rank 0 has written the outputs
        return summary
    finally:
        if fabric is not None and dist.is_initialized():
            dist.destroy_process_group()


def _evaluate(cfg: DictConfig, fabric) -> dict[str, Any]:
    import numpy as np

    from .metrics.distributed import rank_and_world_size
    from .metrics.likelihood_eval import LikelihoodSetup
    from .metrics.naming import LIKELIHOOD_METRICS
    from .metrics.pipeline import EvalSetup, run_evaluation
    from .runtime import device_of, load_for_sampling
    from .utils.images import save_samples_figure
    from .utils.io import write_json_atomic

    device = fabric.device if fabric is not None else device_of(cfg.accelerator)
    rank, world_size = rank_and_world_size()
    module, spec = load_for_sampling(cfg.ckpt_path, cfg.get("sampler"), device)
    setup = EvalSetup(
        n=int(cfg.n), metrics=tuple(cfg.metrics), seed=int(cfg.seed), batch_size=int(cfg.batch_size), use_ema=bool(cfg.use_ema),
        sampler=spec, extractor=cfg.extractor, backend=cfg.backend, reference_split=cfg.reference.split,
        reference_n=cfg.reference.n, kid_subsets=int(cfg.kid.subsets), kid_subset_size=int(cfg.kid.subset_size),
        is_splits=int(cfg.is_splits), pr_k=int(cfg.precision_recall.k), shard=cfg.shard, swd_projections=int(cfg.toy.swd_projections),
        mmd_bandwidth=float(cfg.toy.mmd_bandwidth), classifier_epochs=cfg.classifier.epochs, gather_images=bool(cfg.save_samples), progress=bool(cfg.progress) and rank == 0,
        likelihood=LikelihoodSetup(**OmegaConf.to_container(cfg.nll, resolve=True)),
    )
    result = run_evaluation(module, module.run_config["data"], setup, cfg.paths.cache_dir, step=getattr(module, "global_step_loaded", None))
    result.info["sampled"] = any(r.metric not in LIKELIHOOD_METRICS for r in result.records)
    result.info["weights"] = module.weights_label(setup.use_ema)
    summary: dict[str, Any] = {
        **result.values(),
        "n": result.n, "nfe": result.nfe, "sampler": result.info["sampler"], "steps": result.info["steps"], "sampled": result.info["sampled"],
        "sampler_options": result.info["options"], "weights": result.info["weights"], "seed": setup.seed, "world_size": world_size,
        "ckpt_path": str(Path(cfg.ckpt_path).expanduser().resolve()), "step": getattr(module, "global_step_loaded", None),
        "records": [r.as_dict() for r in result.records],
    }
    if rank == 0:
        out = _out_dir(cfg, result.info)
        out.mkdir(parents=True, exist_ok=True)
        if len(result.preview):
            summary["grid"] = str(save_samples_figure(result.preview, out / "grid.png", title=f"{summary['sampler']}, NFE {result.nfe}"))
        if result.images is not None:
            np.savez(out / "samples.npz", images=result.images.permute(0, 2, 3, 1).numpy())
            summary["samples"] = str(out / "samples.npz")
        summary["metrics_json"] = str(out / "metrics.json")
        write_json_atomic(out / "metrics.json", summary)
        _print_summary(summary, result.records)
    return summary


def _print_summary(summary: dict, records) -> None:
    if summary["sampled"]:
        lines = [f"diffzoo-eval: {summary['n']} samples ({summary['sampler']}, NFE {summary['nfe']}, {summary['weights']} weights, "
                 f"seed {summary['seed']}, {summary['world_size']} process(es))"]
    else:
        lines = [f"diffzoo-eval: likelihood of held-out data ({summary['weights']} weights, seed {summary['seed']}, "
                 f"{summary['world_size']} process(es))"]
    for r in records:
        spread = f" ± {r.std:.4g}" if r.std is not None else ""
        ref = f"  [ref {r.reference.get('split')} n={r.reference.get('n')} hash={r.reference.get('hash')}]" if r.reference.get("hash") else ""
        lines.append(f"  {r.name:>20}: {r.value:.6g}{spread}{ref}")
    lines.append(f"  metrics: {summary['metrics_json']}")
    print("\n".join(lines))


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(evaluate, cfg)


def main() -> None:
    """Console entry point ``diffzoo-eval``."""
    _hydra_main()


if __name__ == "__main__":
    main()
