"""Preemption: on SIGTERM or a cluster's requeue signal, save ``last.ckpt`` at a step boundary and
leave; a re-run of the same command (or the requeued job) resumes from it (``resume=auto``).

* **SIGTERM** (``kill``, SLURM preemption / time limit, ``scancel``): Lightning notes it and ends
  the fit loop after the current batch with ``SIGTERMException``; :meth:`on_exception` then saves
  ``last.ckpt`` from a consistent state (a whole optimizer step, EMA included).
* **Requeue signals** (``signals``, e.g. ``USR1`` sent by ``#SBATCH --signal=USR1@120`` or
  ``USR2`` by submitit): the handler only records the signal; at the end of the current batch all
  ranks agree, save ``last.ckpt``, then hand the signal to the handler that was there before (the
  submitit launcher's requeue, or Lightning's SLURM auto-requeue), or stop like SIGTERM if none.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

__all__ = ["Preemption"]


class Preemption(L.Callback):
    """Save ``<dirpath>/last.ckpt`` when the job is told to stop.

    Args:
        dirpath: checkpoint folder (the ``model_checkpoint`` callback's ``dirpath``).
        signals: requeue signals to intercept, by name without ``SIG`` (``USR1``, ``USR2``).
    """

    def __init__(self, dirpath: str, signals: list[str] | tuple[str, ...] = ("USR1", "USR2")):
        self.dirpath = Path(dirpath)
        try:
            self.signals = [signal.Signals[f"SIG{s.upper().removeprefix('SIG')}"] for s in signals]
        except KeyError as e:
            raise ValueError(f"callbacks.preemption.signals: unknown signal {e}; use names like USR1, USR2") from None
        self.saved: Path | None = None
        self._pending: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    # ------------------------------------------------------------------ requeue signals
    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._record)

    def _record(self, signum, frame) -> None:
        self._pending = signal.Signals(signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pending = trainer.strategy.reduce_boolean_decision(self._pending is not None, all=False)
        if not pending:
            return
        sig = self._pending or self.signals[0]
        self._pending = None
        self._save(trainer, f"SIG{sig.name.removeprefix('SIG')}")
        previous = self._previous.get(sig)  # read before _restore() forgets it
        self._restore()
        if callable(previous):
            previous(sig, None)  # e.g. submitit: requeue the job, then exit
        raise SIGTERMException()  # stop like SIGTERM: train() reports and exits

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
        self._previous = {}

    # ------------------------------------------------------------------ SIGTERM
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SIGTERMException) and self.saved is None:
            self._save(trainer, "SIGTERM")

    def _save(self, trainer, why: str) -> None:
        trainer.save_checkpoint(self.path)  # collective under DDP: every rank gets here
        self.saved = self.path
        rank_zero_info(f"preemption ({why}) at step {trainer.global_step}: saved {self.path}")
