"""Imagen's Efficient U-Net against the standard U-Net at (about) equal parameters (Imagen Fig. A.14: the
Efficient U-Net converges faster, uses less memory and samples 2-3x faster): forward + backward FLOPs,
activation memory of a training step, step time and sampling throughput, side by side.

    python -m benchmarks.efficient_unet [--size 64] [--batch 8] [--repeats 5] [--out results.json]

A super-resolution setting: a 6-channel input (x_t and the upsampled low-resolution image) at ``--size``.
FLOPs and activation bytes are exact counts (the same on every machine); the times depend on it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffzoo.networks import UNet
from diffzoo.networks.efficient_unet import EfficientUNet

from .bench_memory import activation_bytes


def _params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def efficient(size: int) -> EfficientUNet:
    return EfficientUNet(in_channels=6, out_channels=3, image_size=size, base_channels=32, channels=(32, 64, 128, 256),
                         num_res_blocks=(1, 2, 4, 4), attention_levels=(3,), cross_attention_levels=(), num_head_channels=64,
                         num_groups=16)


def standard_like(size: int, target: int) -> UNet:
    """The standard U-Net (channel_mult 1, 2, 4, 8; 2 residual blocks per level; attention at the lowest level)
    whose width brings its parameter count closest to ``target``."""
    best = None
    for base in range(16, 129, 8):
        with torch.device("meta"):
            net = UNet(in_channels=6, out_channels=3, image_size=size, base_channels=base, channel_mult=(1, 2, 4, 8),
                       num_res_blocks=2, attention_resolutions=(size // 8,), num_groups=8, dropout=0.0, num_head_channels=32)
        gap = abs(_params(net) - target)
        if best is None or gap < best[0]:
            best = (gap, base)
    return UNet(in_channels=6, out_channels=3, image_size=size, base_channels=best[1], channel_mult=(1, 2, 4, 8), num_res_blocks=2,
                attention_resolutions=(size // 8,), num_groups=8, dropout=0.0, num_head_channels=32)


def measure(net, size: int, batch: int, repeats: int) -> dict:
    x, t = torch.randn(batch, 6, size, size), torch.full((batch,), 500.0)

    def loss():
        return net(x, t).square().mean()

    with FlopCounterMode(display=False) as counter:
        loss().backward()
    flops = counter.get_total_flops()
    net.zero_grad(set_to_none=True)
    act = activation_bytes(loss, list(net.parameters()))
    steps, forwards = [], []
    for _ in range(repeats):
        net.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss().backward()
        steps.append(time.perf_counter() - start)
        with torch.no_grad():
            start = time.perf_counter()
            net(x, t)
            forwards.append(time.perf_counter() - start)
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return {"params": _params(net), "train_gflops": flops / 1e9, "activation_mb": act / 2**20,
            "step_ms": 1e3 * median(steps), "sample_evals_per_s": batch / median(forwards)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    eff = efficient(args.size)
    std = standard_like(args.size, _params(eff))
    rows = {"efficient_unet": measure(eff, args.size, args.batch, args.repeats),
            "standard_unet": measure(std, args.size, args.batch, args.repeats)}
    print(f"{'':16} {'params':>10} {'GFLOPs(f+b)':>12} {'act MB':>8} {'step ms':>8} {'evals/s':>8}")
    for name, r in rows.items():
        print(f"{name:16} {r['params']:>10,} {r['train_gflops']:>12.2f} {r['activation_mb']:>8.1f} {r['step_ms']:>8.1f} "
              f"{r['sample_evals_per_s']:>8.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"setting": vars(args), **rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
