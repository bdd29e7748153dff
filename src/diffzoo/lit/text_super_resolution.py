"""``TextSuperResolutionModule``: a text-conditional super-resolution stage (Imagen §2.4: the 64→256 and
256→1024 models are conditioned on the text embeddings as well as on the noise-augmented low-resolution image).

:class:`~diffzoo.lit.text_diffusion.TextDiffusionModule`'s captions (encoder, caption dropout for classifier-free
guidance) plus the low-resolution condition of :class:`~diffzoo.lit.super_resolution.LowResolutionStage`: the
batch's image area-downsampled and augmented. Its denoiser takes ``text``, ``low_res`` and ``aug_level``.
"""

from __future__ import annotations

import torch

from ..denoisers import Denoiser
from ..objectives.conditioning_augmentation import ConditioningAugmentation
from .super_resolution import LowResolutionStage
from .text_diffusion import TextDiffusionModule, caption_list

__all__ = ["TextSuperResolutionModule"]


class TextSuperResolutionModule(LowResolutionStage, TextDiffusionModule):
    """Every argument of :class:`~diffzoo.lit.text_diffusion.TextDiffusionModule`, plus ``augmentation``
    (:class:`ConditioningAugmentation`, as :class:`~diffzoo.lit.super_resolution.SuperResolutionModule`'s).
    ``net`` is a text-conditional :class:`~diffzoo.networks.super_resolution.SuperResolutionNet`."""

    def __init__(self, *args, augmentation: ConditioningAugmentation | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_stage(augmentation)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        out = self.objective(self.net, self.schedule, x0, **self.augmented_condition(x0), **self._encode_batch(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The text denoiser (:meth:`TextDiffusionModule.denoiser`) also taking ``low_res`` ``[B, C, h, h]`` and
        ``aug_level`` ``[B]`` (already augmented); its ``null_cond`` is the empty caption (CFG)."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net
        encoder = self.text_ema.shadow if (use_ema and self.text_ema is not None) else self.text_encoder
        def net_fn(x, tau, text=None, low_res=None, aug_level=None):
            return net(x, tau, low_res=low_res, aug_level=aug_level, **self._context(encoder(caption_list(text, x.shape[0]))))

        base = super().denoiser(use_ema)
        return Denoiser(net_fn, self.schedule, self.prediction, cond_keys=("text", "low_res", "aug_level"),
                        null_cond=base.null_cond)
