"""What every diffzoo LightningModule shares: exact-resume seeding, the weight EMA, optimizers
from config partials, and the run's metadata in checkpoints."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ..utils.random import derive_seed

__all__ = ["GenerativeModule"]


class GenerativeModule(L.LightningModule):
    """Base class. Subclasses set, in ``__init__``: ``net`` (the trained ``nn.Module``), ``ema``
    (an :class:`diffzoo.optim.EMA` of ``net``, or ``None``), ``optimizer_factory`` /
    ``lr_scheduler_factory`` (``_partial_`` configs), ``seed`` and ``data_shape``.

    * Every random draw of training step k on rank r (noise levels, noise, dropout) is a function
      of ``(seed, r, k)``: a resumed run draws exactly what an uninterrupted one would.
    * The EMA is updated inside ``optimizer_step``, so checkpoints written at the end of a batch
      always hold raw and EMA weights of the same step.
    * Checkpoints carry ``{"diffzoo": {config, data_shape, wandb_run_id}}``: enough to rebuild
      the model alone (``lit.build.load_module``) and to re-attach a resumed run to its W&B run.
    """

    run_config: dict | None = None  # the resolved run config, set by lit.build.build_module
    wandb_run_id: str | None = None
    fast_paths = None  # a lit.fast_paths.FastPaths, set by apply_fast_paths (config group ``perf``)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.fast_paths is not None and self.fast_paths.channels_last and isinstance(batch, dict):
            x = batch.get("x")
            if isinstance(x, torch.Tensor) and x.ndim == 4:
                batch = {**batch, "x": x.contiguous(memory_format=torch.channels_last)}
        return batch

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(derive_seed(self.seed, "train", self.global_rank, self.global_step))

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if getattr(self, "ema", None) is not None:
            self.ema.update(self.net)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning refuses to clip the gradients of a fused optimizer under mixed precision (it
        assumes the optimizer unscales them inside ``step``). Clip them here instead, unscaling
        first when a grad scaler is in use (fp16), so ``perf.fused_optimizer`` composes with
        ``trainer.gradient_clip_val``."""
        if gradient_clip_val is None or not getattr(optimizer, "_step_supports_amp_scaling", False):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            scaler.unscale_(optimizer)  # scaler.step() then skips its own unscaling
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)

    def trainable_parameters(self):
        """What the optimizer trains: the network's parameters (subclasses add parameter groups)."""
        return self.net.parameters()

    def configure_optimizers(self):
        extra = self.fast_paths.optimizer_kwargs(self.optimizer_factory) if self.fast_paths is not None else {}
        optimizer = self.optimizer_factory(params=self.trainable_parameters(), **extra)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["diffzoo"] = {
            "config": self.run_config,
            "data_shape": list(self.data_shape),
            "wandb_run_id": self.wandb_run_id,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("diffzoo", {})
        self.wandb_run_id = meta.get("wandb_run_id", self.wandb_run_id)

    def num_parameters(self) -> int:
        """Trainable parameters of the network (the EMA copy not counted)."""
        return sum(p.numel() for p in self.net.parameters())
