"""Latent diffusion (Rombach et al. 2022, §3): any diffusion module of the project, trained and sampled
in the latent space ``z = s · E(x)`` of a frozen first-stage autoencoder.

:class:`LatentMixin` turns a :class:`~diffzoo.lit.DiffusionModule` (or a subclass) into its latent
variant without touching its objective, schedule, sampler or guidance:

* training encodes the batch's images, ``z = s · E(x)``, and hands ``z`` to the module's own
  training step (LDM ``LatentDiffusion.get_input`` → ``get_first_stage_encoding``);
* the denoiser works on ``z``: it starts from ``z_T`` of shape ``(C_z, H/f, W/f)``
  (``Denoiser.model_shape``) and maps samples to data coordinates by decoding, ``x = D(z / s)``
  (``to_data``; LDM ``decode_first_stage``), so sample grids, ``diffzoo-sample`` and every metric see
  images; x̂₀ is not clipped (latents have no fixed range; LDM's ``clip_denoised=False``);
* ``data_shape`` stays the images' shape ``(C, H, W)``: what evaluation and the callbacks read.

**Latent scaling** ``s`` (``model.latent_scaling``, a buffer, so checkpoints carry it and resume exactly):

* ``std`` — LDM's ``scale_by_std``: ``s = 1 / std(z)`` over every element of the *first training
  batch* only (``LatentDiffusion.on_train_batch_start``; LDM App. G "component-wise variance ... from
  the first batch"), computed on rank 0 and broadcast;
* ``fixed`` — ``s = model.scale_factor`` from the config (0.18215 for the kl-f8 of txt2img and SD,
  ``configs/latent-diffusion/txt2img-1p4B-eval.yaml``);
* ``none`` — ``s = 1``: VQ latents are *not* rescaled (LDM App. D.1: their variance is close to 1;
  the VQ configs set no ``scale_factor``), nor is the f = 1 identity;
* ``auto`` — ``std`` for a KL first stage, ``none`` for VQ and identity.

The first stage is frozen: in eval mode always (LDM ``disabled_train``), no gradients, outside the
optimizer and the weight EMA. Its weights sit once in the module's state dict, so a checkpoint
rebuilds from its config and weights alone when the config builds the first stage's architecture
without its own checkpoint (``first_stage_config`` on the first stage: see :meth:`on_save_checkpoint`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..denoisers import Denoiser
from ..errors import ConfigError
from .diffusion import DiffusionModule
from .edm import EDMModule
from .text_diffusion import TextDiffusionModule

__all__ = ["LatentMixin", "LatentDiffusionModule", "LatentTextDiffusionModule", "LatentEDMModule", "LATENT_SCALINGS",
           "latent_std_scale"]

# the closed set of model.latent_scaling values (module docstring)
LATENT_SCALINGS = ("auto", "std", "fixed", "none")
_AUTO = {"kl": "std", "vq": "none", "identity": "none"}


def latent_std_scale(z: torch.Tensor) -> torch.Tensor:
    """LDM's ``scale_by_std`` factor ``1 / std(z)``, the std over all elements of ``z`` ``[B, C, h, w]``
    (``ldm/models/diffusion/ddpm.py``: ``1. / z.flatten().std()``, unbiased). Returns a 0-d float32 tensor."""
    return 1.0 / z.detach().float().flatten().std()


class LatentMixin:
    """Latent diffusion around a diffusion module (module docstring). Put it first in the bases:
    ``class LatentX(LatentMixin, X)``.

    Args:
        first_stage: a :class:`~diffzoo.networks.first_stage.FirstStage` (``conf/first_stage/``).
        latent_scaling: one of :data:`LATENT_SCALINGS`.
        scale_factor: ``s`` for ``latent_scaling=fixed``.
        data_shape: one image's shape ``(C, H, W)``; ``H`` and ``W`` divisible by ``f``.
        *args, **kwargs: the wrapped module's arguments; its network takes ``z``
            (``net.in_channels = C_z``, ``net.image_size = H / f``).
    """

    def __init__(self, *args, first_stage: nn.Module, latent_scaling: str = "auto", scale_factor: float | None = None,
                 data_shape=None, **kwargs):
        if latent_scaling not in LATENT_SCALINGS:
            raise ConfigError(f"model.latent_scaling must be one of {list(LATENT_SCALINGS)}, got {latent_scaling!r}")
        kind = getattr(first_stage, "kind", None)
        if kind not in _AUTO:
            raise ConfigError(f"first_stage: kind must be one of {list(_AUTO)} (networks.first_stage.FirstStage), got {kind!r}")
        if data_shape is None or len(data_shape) != 3:
            raise ConfigError(f"latent diffusion needs image data (C, H, W); got data_shape={data_shape}")
        f, cz = int(first_stage.downsampling_factor), int(first_stage.latent_channels)
        if data_shape[1] % f or data_shape[2] % f:
            raise ConfigError(f"first_stage: image sides {tuple(data_shape[1:])} are not divisible by f={f}")
        latent_shape = (cz, data_shape[1] // f, data_shape[2] // f)
        super().__init__(*args, data_shape=tuple(data_shape), **kwargs)
        _check_net_fits_latent(self.net, latent_shape, f)
        self.latent_shape = latent_shape
        self.first_stage = first_stage.eval().requires_grad_(False)
        self.latent_scaling = _AUTO[kind] if latent_scaling == "auto" else latent_scaling
        if self.latent_scaling == "fixed":
            if scale_factor is None or not float(scale_factor) > 0:
                raise ConfigError(f"model.latent_scaling=fixed needs model.scale_factor > 0, got {scale_factor!r}")
            init = float(scale_factor)
        elif scale_factor is not None:
            raise ConfigError(f"model.scale_factor={scale_factor} is only read with model.latent_scaling=fixed "
                              f"(this model's is {self.latent_scaling!r}); set model.scale_factor=null")
        else:
            init = math.nan if self.latent_scaling == "std" else 1.0  # nan: not estimated yet
        self.register_buffer("scale_factor", torch.tensor(init, dtype=torch.float32))

    # ------------------------------------------------------------------ first stage
    def train(self, mode: bool = True):
        """Train mode for the module, never for the frozen first stage (LDM ``disabled_train``)."""
        super().train(mode)
        if getattr(self, "first_stage", None) is not None:
            self.first_stage.eval()
        return self

    def _scale(self) -> torch.Tensor:
        if torch.isnan(self.scale_factor):
            raise RuntimeError("latent scale not estimated yet (model.latent_scaling=std sets it from the first training "
                               "batch): train one step or call fit_scale(x)")
        return self.scale_factor

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in ``[−1, 1]`` → scaled latents ``s · E(x)`` ``[B, C_z, H/f, W/f]``."""
        return self.first_stage.encode(x) * self._scale().to(x.dtype)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, C_z, H/f, W/f]`` → images ``D(z / s)`` ``[B, C, H, W]`` (LDM ``decode_first_stage``)."""
        return self.first_stage.decode(z / self._scale().to(z.dtype))

    @torch.no_grad()
    def fit_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Set ``s = 1 / std(E(x))`` from images ``x`` (``latent_scaling=std``; training calls it on its
        first batch). Returns ``s``."""
        if self.latent_scaling != "std":
            raise ValueError(f"fit_scale: latent_scaling is {self.latent_scaling!r}, not 'std'")
        self.scale_factor.copy_(latent_std_scale(self.first_stage.encode(x)))
        return self.scale_factor

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self.latent_scaling == "std" and torch.isnan(self.scale_factor):
            # LDM: the first batch of the first epoch only; a resumed run keeps the stored buffer
            x = batch["x"]
            cuda = [x.device.index or 0] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # the estimate (a KL posterior sample) leaves the training noise as it was
                self.fit_scale(x)
            if self._trainer is not None and self.trainer.world_size > 1:
                self.scale_factor.copy_(self.trainer.strategy.broadcast(self.scale_factor, src=0))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return super().training_step({**batch, "x": self.encode(batch["x"])}, batch_idx)

    # ------------------------------------------------------------------ sampling
    def prior_sample(self, n: int, generator=None) -> torch.Tensor:
        """``z_T`` ``[n, C_z, H/f, W/f]`` from the forward process's prior."""
        return self.schedule.prior_sample((n, *self.latent_shape), generator, device=self.device)

    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The wrapped module's denoiser on ``z``: starts from ``z_T`` ``(C_z, H/f, W/f)``, no x̂₀
        clipping, samples decoded to images (``to_data = D(· / s)``, ``from_data = s · E``)."""
        d = super().denoiser(use_ema)
        d.model_shape, d.data_range = self.latent_shape, (-math.inf, math.inf)
        d.to_data, d.from_data = self.decode, self.encode
        return d

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """A first stage loaded from its own checkpoint that can describe its architecture
        (``first_stage_config``: an inline config without ``ckpt_path``) is stored as that config, so
        the checkpoint (which holds its weights) rebuilds without the autoencoder's file."""
        super().on_save_checkpoint(checkpoint)
        inline = getattr(self.first_stage, "first_stage_config", None)
        config = checkpoint["diffzoo"].get("config")
        if inline is not None and isinstance(config, dict) and "first_stage" in config:
            checkpoint["diffzoo"]["config"] = {**config, "first_stage": dict(inline)}


def _check_net_fits_latent(net: nn.Module, latent_shape: tuple[int, int, int], f: int) -> None:
    in_ch, size = getattr(net, "in_channels", None), getattr(net, "image_size", None)
    if in_ch is not None and in_ch != latent_shape[0]:
        raise ConfigError(f"net.in_channels={in_ch} but the first stage's latents have {latent_shape[0]} channels; "
                          f"set net.in_channels={latent_shape[0]} (and net.out_channels)")
    if size is not None and size != latent_shape[1]:
        raise ConfigError(f"net.image_size={size} but the latents are {latent_shape[1]}x{latent_shape[2]} (f={f}); "
                          f"set net.image_size={latent_shape[1]}")


class LatentDiffusionModule(LatentMixin, DiffusionModule):
    """A :class:`DiffusionModule` (unconditional, or class-conditional with CFG label dropout) on the
    latents of a frozen first stage (LDM §3; module docstring)."""

    PARTS = DiffusionModule.PARTS + ("first_stage",)


class LatentTextDiffusionModule(LatentMixin, TextDiffusionModule):
    """A :class:`TextDiffusionModule` on the latents of a frozen first stage (LDM §3.3, text-to-image)."""

    PARTS = TextDiffusionModule.PARTS + ("first_stage",)


class LatentEDMModule(LatentMixin, EDMModule):
    """An :class:`EDMModule` (EDM's preconditioning, loss and samplers) on the latents of a frozen first stage.
    Rescaled latents have unit std, so ``model.sigma_data=1`` matches them (EDM's 0.5 is for images in [−1, 1])."""

    PARTS = EDMModule.PARTS + ("first_stage",)
