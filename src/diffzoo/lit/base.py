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

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(derive_seed(self.seed, "train", self.global_rank, self.global_step))

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if getattr(self, "ema", None) is not None:
            self.ema.update(self.net)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.net.parameters())
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
