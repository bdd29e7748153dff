"""Training throughput and data-wait time, logged as ``train/images_per_s``, ``train/step_ms`` and
``train/data_wait_ms``: is the accelerator kept busy, or waiting for the data loader?"""

from __future__ import annotations

import time
from typing import Any

import lightning as L

__all__ = ["Throughput"]


class Throughput(L.Callback):
    """Times every training step on the host and logs the means every ``every_n_steps`` steps.

    * ``train/data_wait_ms``: wall time between the end of one step and the start of the next —
      fetching and transferring the batch plus the loop's own work. Near zero when the loader keeps
      up (workers, pinned memory, persistent workers); large when the step waits for data.
    * ``train/step_ms``: wall time of ``training_step`` through the optimizer step and EMA.
    * ``train/images_per_s``: per-process batch size / (data wait + step time).

    On GPUs the step time is measured without synchronising (CUDA runs asynchronously), so a
    short step's time shows up partly as the next step's data wait; their sum stays exact.
    Only rank 0 logs; logging goes straight to the trainer's loggers (no ``self.log`` cost per step).

    Args:
        every_n_steps: averaging window and logging interval (default: ``trainer.log_every_n_steps``).
    """

    def __init__(self, every_n_steps: int | None = None):
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"callbacks.throughput.every_n_steps must be >= 1 or null, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._last_end: float | None = None
        self._start = 0.0
        self._reset()
        self.last: dict[str, float] = {}

    def _reset(self) -> None:
        self._wait = self._step = 0.0
        self._images = self._steps = self._waits = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end = None
        self._reset()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self._wait += now - self._last_end
            self._waits += 1
        self._start = now

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        self._step += now - self._start
        self._last_end = now
        x = batch.get("x") if isinstance(batch, dict) else None
        self._images += int(x.shape[0]) if x is not None else 0
        self._steps += 1
        every = self.every_n_steps or max(1, int(trainer.log_every_n_steps))
        if self._steps < every:
            return
        total = self._wait + self._step
        self.last = {
            "train/data_wait_ms": 1000.0 * self._wait / max(self._waits, 1),
            "train/step_ms": 1000.0 * self._step / self._steps,
            "train/images_per_s": self._images / total if total > 0 else 0.0,
        }
        self._reset()
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(self.last, step=trainer.global_step)
