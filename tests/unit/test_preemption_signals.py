"""The requeue-signal path of the Preemption callback (SLURM ``--signal=USR1@…``, submitit's
USR2): the handler only records the signal; at the end of that step ``last.ckpt`` is saved, the
handler that was installed before (the launcher's requeue) is called, and the fit stops."""

from __future__ import annotations

import os
import signal
from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from diffzoo.callbacks.preemption import Preemption
from diffzoo.checkpoints import load_checkpoint
from diffzoo.data.base import InMemoryDataset, collate_batch
from diffzoo.data.sampler import InfiniteBatchSampler
from diffzoo.lit import DiffusionModule
from diffzoo.networks.mlp import TimeMLP
from diffzoo.objectives import SimpleLoss
from diffzoo.samplers import ddpm
from diffzoo.schedules import DiscreteSchedule, linear_betas


class _SendSignalAt(L.Callback):
    def __init__(self, step: int, sig: signal.Signals):
        self.step, self.sig = step, sig

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)  # arrives mid-step, like a cluster's warning signal


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2])
def test_requeue_signal_saves_at_the_step_boundary_and_hands_over(tmp_path, sig):
    requeued = []
    previous = signal.signal(sig, lambda signum, frame: requeued.append(signum))  # the launcher's handler
    try:
        torch.manual_seed(0)
        module = DiffusionModule(net=TimeMLP(dim=2, hidden=16, depth=1), schedule=DiscreteSchedule(linear_betas(50)),
                                 objective=SimpleLoss(), sampler=ddpm, optimizer=partial(torch.optim.Adam, lr=1e-3))
        data = DataLoader(InMemoryDataset(torch.randn(64, 2)), batch_sampler=InfiniteBatchSampler(64, 8, 0),
                          collate_fn=collate_batch)
        preemption = Preemption(dirpath=str(tmp_path / "checkpoints"))
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=20, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            num_sanity_val_steps=0, use_distributed_sampler=False,
                            callbacks=[preemption, _SendSignalAt(3, sig)])
        with pytest.raises(SIGTERMException):
            trainer.fit(module, train_dataloaders=data)
        assert requeued == [sig]  # handed to the handler that was there before
        assert preemption.saved == tmp_path / "checkpoints" / "last.ckpt"
        assert load_checkpoint(preemption.saved)["global_step"] == 4  # the step in flight finished first
        assert trainer.global_step == 4
        assert signal.getsignal(sig) is not preemption._record  # our handler removed again
    finally:
        signal.signal(sig, previous)
