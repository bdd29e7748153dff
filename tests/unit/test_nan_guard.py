"""A NaN injected into the loss is caught before it reaches the weights, and the step is named."""

import lightning as L
import pytest
import torch

from diffzoo.callbacks import NanGuard, NonFiniteLossError

BAD_STEP = 2


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.weights: dict[int, torch.Tensor] = {}

    def training_step(self, batch, batch_idx):
        self.weights[self.global_step] = self.net.weight.detach().clone()
        loss = self.net(batch[0]).pow(2).mean()
        return loss * float("nan") if self.global_step == BAD_STEP else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 2)), batch_size=4)


def _fit(guard, steps=4):
    model = _Tiny()
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, callbacks=[guard], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model)
    return model, trainer


def test_stop_names_the_step():
    with pytest.raises(NonFiniteLossError, match=f"step {BAD_STEP}: loss=nan; non-finite gradients in 2 tensors, e.g. net.weight"):
        _fit(NanGuard(action="stop"))


def test_skip_leaves_the_weights_and_goes_on():
    guard = NanGuard(action="skip")
    model, trainer = _fit(guard)
    assert trainer.global_step == 4 and guard.skipped_steps == [BAD_STEP]
    assert torch.equal(model.weights[BAD_STEP], model.weights[BAD_STEP + 1])  # the bad step changed nothing
    assert not torch.equal(model.weights[1], model.weights[BAD_STEP])  # the good ones did
    assert torch.isfinite(model.net.weight).all()


def test_skip_stops_after_too_many_in_a_row():
    with pytest.raises(NonFiniteLossError, match="1 steps in a row"):
        _fit(NanGuard(action="skip", max_skips=0))


def test_bad_action_names_the_key():
    with pytest.raises(ValueError, match=r"callbacks.nan_guard.action='ignore' is not one of \['skip', 'stop'\]"):
        NanGuard(action="ignore")
