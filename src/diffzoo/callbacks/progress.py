"""A Rich progress bar whose total is the number of optimizer steps (training is step-based)."""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["StepProgressBar"]


class StepProgressBar(RichProgressBar):
    """Lightning's Rich bar, with ``trainer.max_steps`` as the total when the data stream is
    endless (diffzoo's loaders are, so that runs resume at the exact batch)."""

    @property
    def total_train_batches(self):
        total = super().total_train_batches
        if (total is None or math.isinf(total)) and self.trainer.max_steps > 0:
            return self.trainer.max_steps * self.trainer.accumulate_grad_batches
        return total
