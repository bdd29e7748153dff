"""``AutoencoderModule``: trains a first-stage autoencoder of latent diffusion (LDM §3.1, App. G) —
the autoencoder (``net``: :class:`~diffzoo.networks.autoencoder.AutoencoderKL` or ``VQModel``) and
the PatchGAN discriminator inside its loss (``objective``: ``KLAutoencoderLoss`` /
``VQAutoencoderLoss``) — with two optimisers and manual optimisation, as Lightning's GAN examples
and CompVis ``ldm/models/autoencoder.py`` (one autoencoder step, then one discriminator step, per
batch; both Adam with the configured optimizer).

:func:`load_first_stage` turns a checkpoint of this module into the frozen first stage that latent
diffusion encodes with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import CheckpointError
from ..objectives.autoencoder_losses import check_loss_fits
from ..optim.ema import EMA
from ..utils.random import GeneratorLike
from .base import DiffzooModule

__all__ = ["AutoencoderModule", "load_first_stage"]

_PREVIEW = 32  # held-out images kept for reconstruction grids


class AutoencoderModule(DiffzooModule):
    """A first-stage autoencoder and its discriminator, trained adversarially.

    Per batch (global step k): the autoencoder step ``objective.generator_loss`` (reconstruction,
    regulariser, adaptive-weighted GAN term from ``disc_start`` on) with the autoencoder's
    optimiser, then ``objective.discriminator_loss`` (hinge) with the discriminator's. Both
    optimisers come from the one ``optimizer`` partial (LDM: Adam, betas (0.5, 0.9)); an
    ``lr_scheduler`` partial schedules both. ``trainer.max_steps`` counts batches (autoencoder
    steps). The posterior noise of step k is seeded by ``(seed, rank, k)``, so resuming is exact.

    Logged: ``train/{ae_loss, rec_loss, nll_loss, kl_loss | codebook_loss, perplexity,
    codebook_usage, g_loss, d_weight, disc_factor, d_loss, logits_real, logits_fake, psnr}``.
    ``sample(n)`` gives a reconstruction grid: ``n // 2`` held-out images, then their reconstructions.

    Args:
        net: the autoencoder. objective: its loss (kind and channels must match the net).
        optimizer, lr_scheduler: ``_partial_`` configs. ema_decay, ema_warmup: an EMA of ``net``
            (``None``: none; LDM's autoencoders use none).
        data_shape, seed: set by the builder.
    """

    PARTS = ("net", "objective", "optimizer", "lr_scheduler", "ema")

    def __init__(self, net: nn.Module, objective: nn.Module, optimizer: Callable, lr_scheduler: Callable | None = None,
                 ema_decay: float | None = None, ema_warmup: bool = False, data_shape=None, seed: int = 0):
        super().__init__()
        check_loss_fits(objective, net)
        self.automatic_optimization = False
        self.net = net
        self.objective = objective
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.ema = EMA(net, decay=ema_decay, warmup=ema_warmup) if ema_decay is not None else None
        self.data_shape = tuple(data_shape) if data_shape is not None else (net.in_channels, net.resolution, net.resolution)
        self.seed = seed
        self.register_buffer("preview", torch.zeros(0, *self.data_shape), persistent=False)

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self):
        ae_params = list(self.net.parameters()) + list(self.objective.generator_parameters())
        opt_ae = self.optimizer_factory(params=ae_params)
        opt_d = self.optimizer_factory(params=self.objective.discriminator.parameters())
        if self.lr_scheduler_factory is None:
            return [opt_ae, opt_d]
        return [opt_ae, opt_d], [{"scheduler": self.lr_scheduler_factory(optimizer=o), "interval": "step"} for o in (opt_ae, opt_d)]

    def on_fit_start(self) -> None:
        if self.trainer.is_global_zero:
            print(f"diffzoo: {self.objective.description}", flush=True)
        dm = getattr(self.trainer, "datamodule", None)
        if self.preview.shape[0] == 0 and hasattr(dm, "val_dataset_tensor"):
            try:
                self.preview = dm.val_dataset_tensor()[:_PREVIEW].to(self.device)
            except (AttributeError, ValueError, TypeError):  # a data set without a held-out split
                pass

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        opt_ae, opt_d = self.optimizers()
        x = batch["x"]
        step = self.global_step
        if self.preview.shape[0] == 0:
            self.preview = x[:_PREVIEW].detach().clone()

        # autoencoder step (CompVis optimizer_idx 0)
        self.toggle_optimizer(opt_ae)
        out = self.net(x)
        g = self.objective.generator_loss(x, out, step, self.net.last_layer)
        opt_ae.zero_grad(set_to_none=True)
        self.manual_backward(g.loss)
        opt_ae.step()
        self.untoggle_optimizer(opt_ae)

        # discriminator step (optimizer_idx 1). The raw optimizer is stepped so that Lightning's
        # global_step counts batches, not optimizer calls (it counts every LightningOptimizer.step).
        self.toggle_optimizer(opt_d)
        d = self.objective.discriminator_loss(x, out.x_rec, step)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d.loss)
        opt_d.optimizer.step()
        self.untoggle_optimizer(opt_d)

        for sched in self._schedulers():
            sched.step()
        if self.ema is not None:
            self.ema.update(self.net)
        mse = (x - out.x_rec.detach()).pow(2).mean(dim=(1, 2, 3))
        logs = {**g.logs, **d.logs, "psnr": (10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))).mean()}  # range 2 = [−1, 1]
        self.log_dict({f"train/{k}": v.float() for k, v in logs.items()}, on_step=True, on_epoch=False, batch_size=x.shape[0])
        self.log("train/loss", g.loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return g.loss.detach()  # already stepped (manual optimisation); returned for callbacks

    def _schedulers(self) -> list:
        scheds = self.lr_schedulers()
        if scheds is None:
            return []
        return list(scheds) if isinstance(scheds, (list, tuple)) else [scheds]

    def num_parameters(self) -> int:
        """Trainable parameters of the autoencoder (the discriminator and the EMA copy not counted)."""
        return sum(p.numel() for p in self.net.parameters())

    # ------------------------------------------------------------------ outputs
    def first_stage(self, use_ema: bool = True) -> nn.Module:
        """The autoencoder (its EMA copy when there is one and ``use_ema``)."""
        return self.ema.shadow if use_ema and self.ema is not None else self.net

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, use_ema: bool = True) -> torch.Tensor:
        """``x`` ``[B, C, H, W]`` → ``decode(encode(x))`` (KL: through the posterior mean)."""
        net = self.first_stage(use_ema)
        was_training = net.training
        net.eval()
        try:
            z = net.posterior(x).mode() if hasattr(net, "posterior") else net.encode(x)
            return net.decode(z)
        finally:
            net.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, generator: GeneratorLike = None, use_ema: bool = True, progress: bool = False,
               callback: Callable | None = None, **_) -> torch.Tensor:
        """A reconstruction grid ``[n, C, H, W]`` in ``[−1, 1]``: ``n // 2`` held-out images, then
        their reconstructions (``n`` odd: one more reconstruction slot is left blank). An autoencoder
        draws nothing at random: ``generator`` is unused."""
        k = max(n // 2, 1)
        x = self.preview[:k] if self.preview.shape[0] else torch.zeros(k, *self.data_shape, device=self.device)
        x = x[torch.arange(k, device=x.device) % x.shape[0]]
        rec = self.reconstruct(x, use_ema).clamp(-1, 1)
        if callback is not None:
            callback({"nfe": 1})
        grid = torch.cat([x, rec])
        return torch.cat([grid, torch.zeros(n - grid.shape[0], *grid.shape[1:], device=grid.device)])[:n]

    def weights_label(self, use_ema: bool = True) -> str:
        return "ema" if use_ema and self.ema is not None else "raw"


def load_first_stage(ckpt_path: str | Path, use_ema: bool = True) -> nn.Module:
    """The autoencoder of an ``AutoencoderModule`` checkpoint (written by ``diffzoo-train`` with an
    ``ae_*`` experiment) as a frozen first stage for latent diffusion.

    Returns the network (:class:`~diffzoo.networks.autoencoder.AutoencoderKL` or ``VQModel``; both
    satisfy :class:`~diffzoo.networks.first_stage.FirstStage`: ``encode(x [B, C, H, W]) → z [B,
    latent_channels, H/f, W/f]``, ``decode(z) → x``) in eval mode with ``requires_grad=False`` — its
    EMA weights when it has them and ``use_ema``. Raises
    :class:`~diffzoo.errors.CheckpointError` when the checkpoint is not of an autoencoder.
    """
    from .build import load_module

    module = load_module(ckpt_path)
    if not isinstance(module, AutoencoderModule):
        raise CheckpointError(f"{ckpt_path} holds a {type(module).__name__}, not an AutoencoderModule; "
                              "train a first stage with an ae_* experiment")
    return module.first_stage(use_ema).eval().requires_grad_(False)
