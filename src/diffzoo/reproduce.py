"""``make reproduce-ddpm-cifar``: the paper recipe of an experiment on every visible GPU.

    python -m diffzoo.reproduce ddpm_cifar10 [--data-dir DIR] [--smoke] [key=value ...]

It prints the plan and its expected cost before starting, then trains with DDP over all visible
GPUs, keeping the paper's *global* batch (the per-process batch is divided by the GPU count).
``--smoke`` runs the same pipeline on CPU with a tiny budget (a few steps, a 10-step sampler) so
that it can be tested anywhere; if the data set is absent then, a synthetic stand-in in the
real on-disk format is generated and the run says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ConfigError, user_facing_errors

__all__ = ["main", "build_parser", "check_arguments", "plan_overrides", "training_cost"]

# Reported numbers the run is meant to reproduce (PAPERS.md §5: FID 3.17, IS 9.46, 50k samples).
PAPER_TARGETS = {"ddpm_cifar10": "FID 3.17 / IS 9.46 (50k samples, EMA weights, 1000-step ancestral sampling)"}


def plan_overrides(experiment: str, n_gpus: int, global_batch: int, data_dir: str | None, smoke: bool) -> list[str]:
    """Hydra overrides for a reproduction run on ``n_gpus`` GPUs (0 = CPU)."""
    out = [f"experiment={experiment}"]
    if data_dir:
        out.append(f"paths.data_dir={Path(data_dir).expanduser().resolve()}")
    if smoke:
        return out + [
            "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_steps=4", "trainer.log_every_n_steps=1",
            "data.batch_size=4", "final_samples=4", "sampler.steps=10",
            "callbacks.sample_grid.every_n_steps=1000000", "callbacks.model_checkpoint.every_n_train_steps=2",
            "logger=csv", f"name={experiment}_smoke",
            "callbacks.evaluation=null",  # Inception FID needs downloaded weights; the smoke test skips it
        ]
    if n_gpus == 0:
        raise ConfigError("no GPU is visible: the paper recipe is a multi-day GPU job; use SMOKE=1 to test the pipeline on CPU")
    if global_batch % n_gpus:
        raise ConfigError(f"the paper's global batch {global_batch} does not divide over {n_gpus} GPUs")
    out += ["trainer.accelerator=gpu", f"trainer.devices={n_gpus}", f"data.batch_size={global_batch // n_gpus}"]
    if n_gpus > 1:
        out.insert(1, "trainer=ddp")
    return out


def _forward_flops(cfg) -> float | None:
    """FLOPs of one forward pass of the network on one image (torch's flop counter)."""
    try:
        import torch
        from hydra.utils import instantiate
        from torch.utils.flop_counter import FlopCounterMode

        net = instantiate(cfg.net).eval()
        x = torch.zeros(1, net.in_channels, net.image_size, net.image_size)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x, torch.zeros(1))
        return float(counter.get_total_flops())
    except Exception:  # the estimate is informative only
        return None


def training_cost(cfg, n_gpus: int = 1) -> dict:
    """The training budget of ``cfg``: ``steps``, ``global_batch``, ``images`` seen, and (when the
    network can be built) ``gflop_per_image`` of one forward pass, ``eflop`` for training
    (forward + backward ≈ 3 forwards) and ``hours_at_100_tflops`` sustained."""
    steps, batch = int(cfg.trainer.max_steps), int(cfg.data.batch_size) * max(1, n_gpus)
    cost = {"steps": steps, "global_batch": batch, "images": steps * batch}
    flops = _forward_flops(cfg)
    if flops:
        total = 3 * flops * steps * batch
        cost.update(gflop_per_image=flops / 1e9, eflop=total / 1e18, hours_at_100_tflops=total / 1e14 / 3600)
    return cost


def _print_plan(cfg, n_gpus: int, smoke: bool) -> None:
    cost = training_cost(cfg, n_gpus)
    print(f"experiment : {cfg.name}")
    print(f"target     : {PAPER_TARGETS.get(cfg.name.removesuffix('_smoke'), 'see conf/experiment')}")
    print(f"budget     : {cost['steps']:,} steps x global batch {cost['global_batch']} = {cost['images'] / 1e6:.1f}M images"
          f" on {'CPU (smoke test)' if smoke else f'{n_gpus} GPU(s)'}")
    if "eflop" in cost:
        print(f"compute    : {cost['gflop_per_image']:.2f} GFLOP per image forward -> {cost['eflop']:.1f} EFLOP for training;"
              f" at 100 TFLOP/s sustained: {cost['hours_at_100_tflops']:.1f} h")
    ev = cfg.callbacks.get("evaluation")
    print("evaluation : " + (f"{ev.n} samples ({ev.extractor} features) every {ev.every_n_steps} steps and at the end"
                             if ev else "none in this run (smoke); evaluate checkpoints with diffzoo-eval")
          + f"; sample grids every {cfg.callbacks.sample_grid.every_n_steps} steps,"
          f" checkpoints every {cfg.callbacks.model_checkpoint.every_n_train_steps}")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m diffzoo.reproduce`` (its arguments are validated against
    ``validation.SCHEMAS["reproduce"]``; the ``key=value`` overrides are diffzoo-train's)."""
    parser = argparse.ArgumentParser(prog="python -m diffzoo.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", help="e.g. ddpm_cifar10")
    parser.add_argument("--data-dir", default=None, help="folder with the data set (else paths.data_dir)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run of the same pipeline")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Each argument against its rule (``validation.SCHEMAS["reproduce"]``), the experiment against
    the shipped ones: a one-line :class:`ConfigError` before anything is composed."""
    from .config import CONFIG_DIR
    from .validation import SCHEMAS

    for dest, rule in SCHEMAS["reproduce"].items():
        rule.check(f"--{dest.replace('_', '-')}" if dest != "experiment" else dest, getattr(args, dest))
    experiments = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
    if args.experiment not in experiments:
        raise ConfigError(f"experiment={args.experiment!r} is not one of {experiments}")


def _compose(overrides: list[str]):
    """``compose_config("train", overrides)`` with Hydra's own errors (an unknown key or option) as one line."""
    from hydra.errors import HydraException

    from .config import compose_config

    try:
        return compose_config("train", overrides)
    except HydraException as e:
        raise ConfigError(next(iter(str(e).splitlines()), type(e).__name__)) from None


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (Hydra overrides are key=value)")
    args.overrides = overrides

    import torch
    from omegaconf import open_dict

    from .train import train

    try:
        check_arguments(args)
        n_gpus = 0 if args.smoke else torch.cuda.device_count()
        paper = _compose([f"experiment={args.experiment}"])
        overrides = plan_overrides(args.experiment, n_gpus, int(paper.data.batch_size), args.data_dir, args.smoke)
        cfg = _compose(overrides + list(args.overrides))
        from .validation import validate_config

        validate_config(cfg)  # diffzoo-train's checks, before the plan is printed
        _print_plan(cfg, n_gpus, args.smoke)
        if args.smoke:
            _ensure_smoke_data(cfg)
        if not args.smoke and "download" in cfg.data and not args.data_dir:
            with open_dict(cfg):
                cfg.data.download = True
        train(cfg)
    except user_facing_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _ensure_smoke_data(cfg) -> None:
    """For ``--smoke`` without the real data: write a synthetic stand-in and say so."""
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from .data.errors import DataNotFoundError
    from .data.synthetic import write_fake_cifar10

    try:
        instantiate(cfg.data).setup("fit")
        return
    except DataNotFoundError:
        pass
    root = Path(cfg.paths.cache_dir).expanduser().resolve() / "smoke-data"
    write_fake_cifar10(root)
    print(f"smoke      : real data not found; using SYNTHETIC random images in the CIFAR-10 format at {root}")
    with open_dict(cfg):
        cfg.paths.data_dir = str(root)


if __name__ == "__main__":
    main()
