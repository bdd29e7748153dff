"""``TextInpaintingModule``: GLIDE's text-conditional inpainting model, fine-tuned from a base model.

GLIDE §4.3: "we fine-tune our model to perform inpainting, during which random regions of training
examples are erased, and the remaining portions are fed into the model along with a mask channel as
additional conditioning information". The network is an
:class:`~diffzoo.networks.inpainting.InpaintingUNet`; with ``base_ckpt`` it starts from a trained
text-to-image checkpoint (its EMA weights when it has them), the extra input channels at zero, so
step 0 of fine-tuning is the base model. Sampling takes ``cond={"text": …, "masked_image": …,
"mask": …}``; caption dropout and classifier-free guidance work as in
:class:`~diffzoo.lit.text_diffusion.TextDiffusionModule` (the known image is kept in both halves).

The other way to inpaint — replacement, with any unconditional model — is
:mod:`diffzoo.samplers.inpaint`; GLIDE §4.3 / Fig. 4 compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.captions import EMPTY_CAPTION
from ..denoisers import Denoiser
from ..errors import ConfigError
from ..networks.inpainting import InpaintingUNet
from .text_diffusion import TextDiffusionModule, caption_list

__all__ = ["TextInpaintingModule", "random_box_masks"]


def random_box_masks(n: int, height: int, width: int, min_frac: float, max_frac: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """One erased rectangle per image: float ``[n, 1, H, W]``, 1 = known, 0 = erased (to be filled).

    Each side of the rectangle is a uniform fraction in ``[min_frac, max_frac]`` of the image side
    (at least one pixel), its position uniform over the image (GLIDE §4.3: "random regions ... are
    erased"; the shape distribution is not given in the paper — rectangles are our choice)."""
    if not 0.0 < min_frac <= max_frac <= 1.0:
        raise ConfigError(f"model.mask_min_frac / mask_max_frac must satisfy 0 < min <= max <= 1, got {min_frac}, {max_frac}")
    u = torch.rand(n, 4, generator=generator)
    h = (min_frac + (max_frac - min_frac) * u[:, 0]) * height
    w = (min_frac + (max_frac - min_frac) * u[:, 1]) * width
    h, w = h.round().clamp(1, height).long(), w.round().clamp(1, width).long()
    top = (u[:, 2] * (height - h + 1).float()).floor().long().clamp(max=height - 1)
    left = (u[:, 3] * (width - w + 1).float()).floor().long().clamp(max=width - 1)
    rows = torch.arange(height)[None, :, None]
    cols = torch.arange(width)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]))
    return (~inside).float()[:, None]


class TextInpaintingModule(TextDiffusionModule):
    """A text-conditional inpainting diffusion model (GLIDE §4.3).

    Args:
        base_ckpt: a text-to-image checkpoint (``model=text_diffusion``) of the same U-Net and text
            encoder to start from; None = train from scratch.
        mask_min_frac, mask_max_frac: side fractions of the erased rectangle (:func:`random_box_masks`).
        **kwargs: the :class:`TextDiffusionModule` arguments; ``net`` must be an ``InpaintingUNet``.
    """

    def __init__(self, *args, base_ckpt: str | None = None, mask_min_frac: float = 0.25,
                 mask_max_frac: float = 0.75, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.net, InpaintingUNet):
            raise ConfigError("model=text_inpainting needs net._target_=diffzoo.networks.inpainting.InpaintingUNet "
                              f"(got {type(self.net).__name__})")
        random_box_masks(1, 2, 2, float(mask_min_frac), float(mask_max_frac))  # validates the fractions
        self.mask_min_frac, self.mask_max_frac = float(mask_min_frac), float(mask_max_frac)
        self.base_ckpt = base_ckpt
        if base_ckpt:
            self._start_from(base_ckpt)

    @torch.no_grad()
    def _start_from(self, ckpt_path: str) -> None:
        """Copy a base text-to-image model (EMA weights if it has them) into the network, the text
        encoder and their EMA copies, the extra input channels at zero (GLIDE §4.3)."""
        from .build import load_module  # the base is rebuilt from its own stored config

        base = load_module(ckpt_path)
        if not isinstance(base, TextDiffusionModule) or isinstance(base, TextInpaintingModule):
            raise ConfigError(f"model.base_ckpt={ckpt_path} is a {type(base).__name__} checkpoint; a text-to-image "
                              "model (model=text_diffusion) is needed")
        base_net = base.ema.shadow if base.ema is not None else base.net
        base_text = base.text_ema.shadow if base.text_ema is not None else base.text_encoder
        self.net.load_base(base_net)
        self.text_encoder.load_state_dict(base_text.state_dict())
        if self.ema is not None:
            self.ema.shadow.load_state_dict(self.net.state_dict())
        if self.text_ema is not None:
            self.text_ema.shadow.load_state_dict(self.text_encoder.state_dict())

    def _masks(self, x0: torch.Tensor) -> torch.Tensor:
        """The step's erased regions ``[B, 1, H, W]`` (seeded per step, stream ``"inpaint_mask"``)."""
        gen = torch.Generator().manual_seed(self.step_seed("inpaint_mask"))
        m = random_box_masks(x0.shape[0], x0.shape[2], x0.shape[3], self.mask_min_frac, self.mask_max_frac, gen)
        return m.to(device=x0.device, dtype=x0.dtype)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        mask = self._masks(x0)
        out = self.objective(self.net, self.schedule, x0, masked_image=x0 * mask, mask=mask, **self._encode_batch(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """As :meth:`TextDiffusionModule.denoiser`, also taking ``masked_image`` ``[B, C, H, W]`` and
        ``mask`` ``[B, 1, H, W]`` (1 = known; both None = nothing known)."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net
        encoder = self.text_ema.shadow if (use_ema and self.text_ema is not None) else self.text_encoder

        def net_fn(x: torch.Tensor, tau: torch.Tensor, text: Sequence[str] | str | None = None,
                   masked_image: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
            captions = caption_list(text, x.shape[0])
            return net(x, tau, masked_image=masked_image, mask=mask, **self._context(encoder(captions)))

        null = {"text": EMPTY_CAPTION} if self.caption_drop_prob > 0 else None
        return Denoiser(net_fn, self.schedule, self.prediction, cond_keys=("text", "masked_image", "mask"), null_cond=null)
