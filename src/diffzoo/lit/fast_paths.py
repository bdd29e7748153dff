"""Speed and memory switches of a training run (config group ``perf``), applied to a built module.

Mixed precision itself is Lightning's (``trainer.precision=bf16-mixed`` / ``16-mixed``): the
networks keep their time embeddings and GroupNorms in float32 under autocast (see
``networks.unet``). The switches here act on the module:

* ``channels_last``: the network's weights and every 4-D training batch use the NHWC layout
  (faster convolutions with cuDNN / oneDNN on tensor-core GPUs and recent CPUs).
* ``compile``: ``torch.compile`` of the network in place (``nn.Module.compile``: parameter
  names and checkpoints are unchanged); ``compile_ema`` also compiles the EMA copy used for
  sampling. ``compile_mode`` is passed to ``torch.compile`` (``default``, ``reduce-overhead``,
  ``max-autotune``).
* ``fused_optimizer``: the optimizer's fused kernel (``fused=True``; Adam / AdamW / SGD).
* ``activation_checkpointing``: recompute block activations in the backward pass (networks
  with a ``use_checkpoint`` attribute: the U-Nets).
* ``matmul_precision``: ``torch.set_float32_matmul_precision`` (``high`` = TF32 on Ampere+ GPUs).
* ``cudnn_benchmark``: let cuDNN pick the fastest convolution algorithm for fixed shapes.

Each is measured in ``benchmarks/`` (``make bench``; ``benchmarks/gpu.py`` on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch

from ..errors import ConfigError

__all__ = ["FastPaths", "apply_fast_paths", "COMPILE_MODES", "MATMUL_PRECISIONS"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
MATMUL_PRECISIONS = ("highest", "high", "medium")
FUSED_OPTIMIZERS = ("Adam", "AdamW", "SGD", "Adagrad")


@dataclass(frozen=True)
class FastPaths:
    """The ``perf`` config node; see the module docstring for each switch."""

    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    compile_ema: bool = False
    fused_optimizer: bool = False
    activation_checkpointing: bool = False
    matmul_precision: str = "highest"
    cudnn_benchmark: bool = False

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> "FastPaths":
        """Build from a config mapping, naming any unknown key or invalid value (``perf.<key>``)."""
        node = dict(node or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) perf.{', perf.'.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        paths = cls(**node)
        if paths.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"perf.compile_mode={paths.compile_mode!r}; valid: {', '.join(COMPILE_MODES)}")
        if paths.matmul_precision not in MATMUL_PRECISIONS:
            raise ConfigError(f"perf.matmul_precision={paths.matmul_precision!r}; valid: {', '.join(MATMUL_PRECISIONS)}")
        return paths

    def optimizer_kwargs(self, optimizer_factory) -> dict[str, Any]:
        """Extra keyword arguments for the optimizer (``fused=True`` when asked and supported)."""
        if not self.fused_optimizer:
            return {}
        cls = getattr(optimizer_factory, "func", optimizer_factory)
        name = getattr(cls, "__name__", str(cls))
        if name not in FUSED_OPTIMIZERS:
            raise ConfigError(
                f"perf.fused_optimizer=true but the optimizer {name} has no fused kernel; "
                f"use one of {', '.join(FUSED_OPTIMIZERS)} or set perf.fused_optimizer=false"
            )
        return {"fused": True}


def apply_fast_paths(module: torch.nn.Module, node: Mapping[str, Any] | FastPaths | None) -> FastPaths:
    """Apply the ``perf`` switches to a built :class:`~diffzoo.lit.base.GenerativeModule`
    (before ``trainer.fit``) and store them on it as ``module.fast_paths``. Returns them."""
    paths = node if isinstance(node, FastPaths) else FastPaths.from_config(node)
    module.fast_paths = paths
    torch.set_float32_matmul_precision(paths.matmul_precision)
    if paths.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    net = getattr(module, "net", None)
    if net is None:  # e.g. SGLD's posterior over two parameters: nothing to convert or compile
        asked = [k for k in ("channels_last", "compile", "activation_checkpointing") if getattr(paths, k)]
        if asked:
            raise ConfigError(f"perf.{asked[0]}=true but {type(module).__name__} has no network; set it to false")
        return paths
    nets = [net]
    ema = getattr(module, "ema", None)
    if ema is not None:
        nets.append(ema.shadow)
    if paths.activation_checkpointing:
        if not hasattr(module.net, "use_checkpoint"):
            raise ConfigError(
                f"perf.activation_checkpointing=true but {type(module.net).__name__} does not support it "
                "(networks with a use_checkpoint option: UNet); set perf.activation_checkpointing=false"
            )
        module.net.use_checkpoint = True
    if paths.channels_last:
        for net in nets:
            net.to(memory_format=torch.channels_last)
    if paths.compile:
        module.net.compile(mode=paths.compile_mode)
        if paths.compile_ema and ema is not None:
            ema.shadow.compile(mode=paths.compile_mode)
    return paths
