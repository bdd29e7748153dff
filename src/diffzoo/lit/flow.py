"""``FlowModule``: a velocity network on a forward process, trained by flow matching — rectified
flow (Liu et al. 2022) and its reflow (§2.2, Algorithm 1) as a second stage of the same run.

**Reflow in one run.** With ``reflow_at = k`` the module trains 1-rectified flow on the data for k
optimizer steps; at step k it draws ``reflow_pairs`` couplings ``(x_1, ODE(x_1))`` from its own EMA
weights with ``reflow_sampler`` (:func:`~diffzoo.samplers.reflow.draw_pairs`: pair i depends on
``(seed, i)`` only), keeps them as buffers (so checkpoints hold them and a resumed run trains on the
same pairs), starts the 2-rectified flow from the teacher's weights and from then on trains on
batches of those pairs instead of the data. One run therefore needs no teacher checkpoint — which
is what lets ``experiment=reflow_digits trainer.fast_dev_run=true`` run alone (its one step is
stage one); :func:`write_reflow_pairs` writes the pairs of any flow checkpoint to a file instead.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from ..denoisers import Denoiser
from ..errors import ConfigError
from ..samplers import SamplerSpec
from ..samplers.reflow import ReflowPairs, draw_pairs, save_pairs
from ..utils.random import derive_seed
from .base import GenerativeModule

__all__ = ["FlowModule", "write_reflow_pairs"]


class FlowModule(GenerativeModule):
    """A flow-matching model as a LightningModule (module docstring).

    Args:
        net: ``net(x_t, τ, y=None) → u`` (the velocity; ``τ = schedule.model_time(t)``).
        schedule: the forward process (:class:`~diffzoo.schedules.RectifiedFlow`, or any process the
            objective and samplers can differentiate).
        objective: ``objective(net, schedule, x0, noise=None, **cond) → ObjectiveOutput``
            (:class:`~diffzoo.objectives.FlowMatchingLoss`).
        sampler: a :class:`~diffzoo.samplers.SamplerSpec` (``flow_euler``, ``flow_heun``, ``flow_rk45``;
            DDIM and ancestral sampling read the flow through its x̂₀ / ε̂ views).
        optimizer, lr_scheduler, ema_decay, ema_warmup, data_shape, seed: as
            :class:`~diffzoo.lit.DiffusionModule`.
        conditional: pass the batch's class label ``y`` to the network (not with reflow).
        reflow_at: the optimizer step at which training switches from the data (1-rectified flow)
            to reflow pairs of the model itself (2-rectified flow); ``None``: no reflow.
        reflow_pairs: how many pairs to draw; reflow_sampler: the (deterministic) sampler drawing them;
        reflow_batch_size: samples per sampling batch while drawing.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule,
        objective: nn.Module,
        sampler,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        ema_decay: float | None = 0.9999,
        ema_warmup: bool = False,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        conditional: bool = False,
        reflow_at: int | None = None,
        reflow_pairs: int = 2000,
        reflow_sampler=None,
        reflow_batch_size: int = 500,
    ):
        super().__init__()
        self._set_parts(net, schedule, objective, optimizer, lr_scheduler, ema_decay, ema_warmup, data_shape, seed, conditional)
        self._set_sampler(sampler)
        self.reflow_at = None if reflow_at is None else int(reflow_at)
        if self.reflow_at is not None:
            if self.reflow_at < 0 or int(reflow_pairs) < 1 or int(reflow_batch_size) < 1:
                raise ConfigError(f"model.reflow_at={reflow_at}, model.reflow_pairs={reflow_pairs} and "
                                  f"model.reflow_batch_size={reflow_batch_size} must be ≥ 0, ≥ 1 and ≥ 1")
            if conditional:
                raise ConfigError("model.reflow_at is set but model.conditional=true: reflow pairs carry no labels; "
                                  "reflow an unconditional model (model.conditional=false)")
            spec = reflow_sampler if reflow_sampler is not None else "flow_rk45"
            if isinstance(spec, Mapping):
                spec = {k: v for k, v in spec.items()}
            self.reflow_sampler = SamplerSpec.of(spec)
            self.check_sampler(self.reflow_sampler)
            self.reflow_batch_size = int(reflow_batch_size)
            n = int(reflow_pairs)
            # the pairs travel in checkpoints: a resumed run trains 2-RF on the same pairs
            self.register_buffer("reflow_noise", torch.zeros(n, *self.data_shape))
            self.register_buffer("reflow_x0", torch.zeros(n, *self.data_shape))
            self.register_buffer("reflow_ready", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ reflow
    @property
    def reflowing(self) -> bool:
        """True once the reflow pairs are drawn (training is then 2-rectified flow)."""
        return self.reflow_at is not None and bool(self.reflow_ready)

    def reflow_pairs(self) -> ReflowPairs:
        """The pairs 2-RF trains on (zeros before they are drawn)."""
        return ReflowPairs(self.reflow_noise, self.reflow_x0)

    @torch.no_grad()
    def start_reflow(self) -> None:
        """Draw the pairs from the current EMA (teacher) weights, keep them, and start 2-RF from the
        teacher's weights (Liu et al. 2022, Algorithm 1)."""
        teacher = self.ema.shadow if self.ema is not None else self.net
        was_training = teacher.training
        teacher.eval()
        try:
            pairs = draw_pairs(self.denoiser(use_ema=True), self.reflow_sampler, self.reflow_noise.shape[0],
                               derive_seed(self.seed, "reflow"), self.data_shape, self.reflow_batch_size, self.device)
        finally:
            teacher.train(was_training)
        self.reflow_noise.copy_(pairs.noise)
        self.reflow_x0.copy_(pairs.x0)
        self.reflow_ready.fill_(True)
        if self.ema is not None:
            self.net.load_state_dict(self.ema.shadow.state_dict())

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self.reflow_at is not None and not self.reflowing and self.global_step >= self.reflow_at:
            self.start_reflow()
            torch.manual_seed(self.step_seed("train"))  # the drawing used its own generators; reseed anyway

    # ------------------------------------------------------------------ training
    def _cond(self, batch: dict) -> dict:
        return {"y": self._labels(batch)} if self.conditional else {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        if self.reflowing:  # 2-RF: a batch of (noise, ODE sample) pairs, drawn by the step's seed
            gen = torch.Generator().manual_seed(self.step_seed("reflow_pairs"))
            idx = torch.randint(self.reflow_x0.shape[0], (x0.shape[0],), generator=gen).to(self.reflow_x0.device)
            out = self.objective(self.net, self.schedule, self.reflow_x0[idx], noise=self.reflow_noise[idx])
        else:  # 1-RF on the data; a data set of pairs gives each example's noise ("noise")
            out = self.objective(self.net, self.schedule, x0, noise=batch.get("noise"), **self._cond(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The velocity network (EMA weights by default) as a ``"flow"`` :class:`~diffzoo.denoisers.Denoiser`
        on its process (x̂₀ = x − t u, ε̂ = x + (1 − t) u on rectified flow)."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net

        def net_fn(x: torch.Tensor, tau: torch.Tensor, **cond) -> torch.Tensor:
            return net(x, tau, **cond)

        return Denoiser(net_fn, self.schedule, "flow", cond_keys=("y",) if self.conditional else ())


def write_reflow_pairs(ckpt_path, out, n: int, seed: int = 0, sampler=None, batch_size: int = 500,
                       use_ema: bool = True, device=None):
    """Draw ``n`` reflow pairs ``(x_1, ODE(x_1))`` from the flow checkpoint ``ckpt_path`` and write them
    to ``out`` (:func:`~diffzoo.samplers.reflow.save_pairs`; pair i depends on ``(seed, i)`` only).
    ``sampler``: a :class:`~diffzoo.samplers.SamplerSpec` or its config (default: the checkpoint's own).
    Returns the written path."""
    from .build import load_module

    module = load_module(ckpt_path)
    if device is not None:
        module = module.to(device)
    spec = SamplerSpec.of(dict(sampler) if isinstance(sampler, Mapping) else sampler) if sampler is not None else module.sampler
    module.check_sampler(spec)
    pairs = draw_pairs(module.denoiser(use_ema), spec, n, seed, module.data_shape, batch_size, module.device)
    return save_pairs(out, pairs, checkpoint=str(ckpt_path), sampler=spec.describe(), seed=seed,
                      weights=module.weights_label(use_ema))
