"""Activation memory of one training step, with and without activation checkpointing and bf16
autocast: the bytes autograd keeps for the backward pass (parameters excluded), counted with
saved-tensor hooks — exact and the same on every machine, unlike a process's peak RSS. The step
time of each variant is measured alongside (checkpointing trades compute for memory)."""

from __future__ import annotations

import time

import torch

from .harness import Measurement, Section, interleave, median
from .models import net_config, our_unet

__all__ = ["activation_bytes", "memory_section"]


def activation_bytes(loss_fn, params) -> int:
    """Bytes of the distinct storages saved for backward while ``loss_fn()`` runs (parameters
    excluded); runs the backward pass too (so checkpointed recomputation happens)."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    return sum(seen.values())


def memory_section(name: str, batch: int, repeats: int) -> Section:
    """Activation MB per variant of one forward + backward of U-Net ``name`` at ``batch``."""
    torch.manual_seed(0)
    net = our_unet(name)
    cfg = net_config(name)
    x = torch.randn(batch, cfg["in_channels"], cfg["image_size"], cfg["image_size"])
    t = torch.rand(batch) * 999

    def step(checkpoint: bool, bf16: bool):
        net.use_checkpoint = checkpoint
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x, t).float().square().mean()

    variants = {
        "fp32": (False, False),
        "fp32 + activation checkpointing": (True, False),
        "bf16 autocast": (False, True),
        "bf16 autocast + activation checkpointing": (True, True),
    }
    section = Section(f"Activation memory of a training step — {name} U-Net, batch {batch}", baseline="fp32",
                      notes=["bytes autograd saves for backward, parameters excluded; the time column is a separate, "
                             "interleaved measurement of the same step"])
    mb = {v: activation_bytes(lambda: step(*flags), net.parameters()) / 2**20 for v, flags in variants.items()}

    def timed_step(flags):
        def run():
            start = time.perf_counter()
            net.zero_grad(set_to_none=True)
            step(*flags).backward()
            return time.perf_counter() - start
        return run

    times = interleave({v: timed_step(f) for v, f in variants.items()}, repeats=repeats, warmup=1)
    base_time = median(times["fp32"])
    for v in variants:
        section.add(Measurement(v, mb[v], "MiB", note=f"step time ×{median(times[v]) / base_time:.2f}"))
    net.use_checkpoint = False
    return section.finish()
