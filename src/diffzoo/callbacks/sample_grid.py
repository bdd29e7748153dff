"""Periodic sample grids during training (PNG in the run dir, and an image in W&B)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from ..utils.images import save_samples_figure
from ..utils.random import derive_seed

__all__ = ["SampleGrid"]


class SampleGrid(L.Callback):
    """Every ``every_n_steps`` optimizer steps, rank 0 draws ``n`` samples with the EMA weights
    from fixed noise (seeded by ``seed``, so grids of different steps are comparable) and writes
    ``<dirpath>/step_XXXXXXX.png``; loggers that take images (W&B) get it as ``samples``.

    Args:
        dirpath: output folder (default ``<run_dir>/samples`` via the trainer's root dir).
    """

    def __init__(self, every_n_steps: int = 500, n: int = 64, seed: int = 0, dirpath: str | None = None, use_ema: bool = True):
        if every_n_steps < 1 or n < 1:
            raise ValueError("sample_grid: every_n_steps and n must be >= 1")
        self.every_n_steps = every_n_steps
        self.n = n
        self.seed = seed
        self.dirpath = dirpath
        self.use_ema = use_ema
        self.last_path: Path | None = None

    def _dir(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "samples"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_steps != 0 or not trainer.is_global_zero or trainer.sanity_checking:
            return
        self.draw(trainer, pl_module, step)

    @torch.no_grad()
    def draw(self, trainer, pl_module, step: int) -> Path:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "grid"))
        with torch.random.fork_rng(devices=[]):  # keep the training RNG untouched
            x = pl_module.sample(self.n, generator=gen, use_ema=self.use_ema)
        path = save_samples_figure(x, self._dir(trainer) / f"step_{step:07d}.png", title=f"step {step}")
        self.last_path = path
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(path)], step=step)
        return path
