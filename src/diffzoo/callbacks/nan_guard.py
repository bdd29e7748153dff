"""NaN / Inf guard: a non-finite loss or gradient is caught before it reaches the weights."""

from __future__ import annotations

import lightning as L
import torch

from ..errors import DiffzooError

__all__ = ["NanGuard", "NonFiniteLossError", "NAN_GUARD_ACTIONS"]

NAN_GUARD_ACTIONS = ("skip", "stop")


class NonFiniteLossError(DiffzooError, FloatingPointError):
    """Training produced a NaN / Inf loss or gradient (the message names the step)."""


class NanGuard(L.Callback):
    """Check the loss (and the gradients) of every optimizer step before the weights change.

    The loss is seen in ``on_before_backward``; the gradients in ``on_before_optimizer_step``
    (after backward and the DDP all-reduce, before clipping and ``optimizer.step``), where one
    host sync per step decides. Under DDP the decision is reduced over ranks, so every rank
    skips or stops together.

    Args:
        action: ``"stop"`` — raise :class:`NonFiniteLossError` naming the step, the loss and the
            first non-finite gradients; ``"skip"`` — drop this step's gradients (the optimizer
            step changes nothing), warn, and go on.
        check_grads: also check gradients (skipped under ``16-mixed`` precision, whose gradient
            scaler handles overflowing fp16 gradients itself).
        max_skips: with ``"skip"``, stop after this many *consecutive* skipped steps.
    """

    def __init__(self, action: str = "stop", check_grads: bool = True, max_skips: int = 10):
        if action not in NAN_GUARD_ACTIONS:
            raise ValueError(f"callbacks.nan_guard.action={action!r} is not one of {list(NAN_GUARD_ACTIONS)}")
        if max_skips < 0:
            raise ValueError(f"callbacks.nan_guard.max_skips={max_skips} must be >= 0")
        self.action = action
        self.check_grads = check_grads
        self.max_skips = max_skips
        self.skipped_steps: list[int] = []
        self._consecutive = 0
        self._loss: torch.Tensor | None = None

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        loss, self._loss = self._loss, None
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        check_grads = self.check_grads and str(trainer.precision) != "16-mixed"
        checks = [torch.isfinite(loss).all()] if loss is not None else []
        if check_grads:
            checks.extend(torch.isfinite(g).all() for g in grads)
        bad = bool(checks) and not bool(torch.stack([c.to(checks[0].device) for c in checks]).all())  # one sync
        bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            self._consecutive = 0
            return
        step = trainer.global_step
        what = self._describe(pl_module, optimizer, loss, check_grads)
        if self.action == "stop":
            raise NonFiniteLossError(
                f"non-finite training values at step {step}: {what}. Stopped (callbacks.nan_guard.action=stop); "
                "try a lower optimizer.lr or trainer.gradient_clip_val, or callbacks.nan_guard.action=skip")
        self._consecutive += 1
        if self._consecutive > self.max_skips:
            raise NonFiniteLossError(
                f"non-finite training values at step {step}: {what}; {self._consecutive} steps in a row "
                f"(callbacks.nan_guard.max_skips={self.max_skips}). Stopped")
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None  # optimizers skip parameters without a gradient: the weights stay as they were
        self.skipped_steps.append(step)
        from lightning.pytorch.utilities.rank_zero import rank_zero_warn

        rank_zero_warn(f"nan_guard: skipped the optimizer step at step {step}: {what}")
        pl_module.log("train/nan_skips", float(len(self.skipped_steps)), on_step=True, on_epoch=False, rank_zero_only=True)

    @staticmethod
    def _describe(pl_module, optimizer, loss, check_grads: bool) -> str:
        parts = [f"loss={float(loss)}" if loss is not None else "loss not seen"]
        if check_grads:
            names = {id(p): n for n, p in pl_module.named_parameters()}
            bad = [names.get(id(p), "?") for g in optimizer.param_groups for p in g["params"]
                   if p.grad is not None and not torch.isfinite(p.grad).all()]
            if bad:
                parts.append(f"non-finite gradients in {len(bad)} tensors, e.g. {', '.join(bad[:3])}")
        return "; ".join(parts)

    def state_dict(self) -> dict:
        return {"skipped_steps": list(self.skipped_steps), "consecutive": self._consecutive}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped_steps = list(state_dict.get("skipped_steps", []))
        self._consecutive = int(state_dict.get("consecutive", 0))
