"""GLIDE's inpainting model (Nichol et al. 2021, §4.3; glide-text2im ``InpaintText2ImUNet``).

The U-Net sees, next to ``x_t``, the known part of the image and the mask as extra input channels:

    input = [x_t, m ⊙ x_known, m]        (C + C + 1 channels; m = 1 where the pixel is known)

"we add four additional input channels: a second set of RGB channels, and a mask channel"; the
model is fine-tuned from the text-to-image base, with "the input weights for these additional
channels initialized to zero" (§4.3) — so at the start of fine-tuning the model is exactly the base
model, whatever the mask (:meth:`InpaintingUNet.from_base`). Without a mask the extra channels are
zero, as glide-text2im fills a missing ``inpaint_image`` / ``inpaint_mask`` with zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import UNet

__all__ = ["InpaintingUNet"]


class InpaintingUNet(nn.Module):
    """A :class:`~diffzoo.networks.unet.UNet` with the known image and the mask as extra inputs.

    Args:
        in_channels: image channels ``C`` (the inner U-Net takes ``2C + 1``).
        **unet_kwargs: the :class:`UNet` arguments (``out_channels``, ``text_dim``, …).

    Attributes of the inner U-Net (``image_size``, ``text_dim``, ``num_classes``, …) are read
    through; ``in_channels`` is the image's ``C``, so data-shape checks see the image.
    """

    def __init__(self, in_channels: int = 3, **unet_kwargs):
        super().__init__()
        self.in_channels = int(in_channels)
        self.unet = UNet(in_channels=2 * self.in_channels + 1, **unet_kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("unet"), name)

    def forward(self, x: torch.Tensor, t: torch.Tensor, masked_image: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """``x`` ``[B, C, H, W]``, ``t`` ``[B]``; ``masked_image`` ``[B, C, H, W]`` (the known image —
        multiplied by the mask here, so what lies under m = 0 never reaches the network), ``mask``
        ``[B, 1, H, W]`` in {0, 1} (1 = known); both None = nothing known. Other keywords (``y``,
        ``context``, ``pooled``, …) go to the U-Net → ``[B, out_channels, H, W]``."""
        if (masked_image is None) != (mask is None):
            raise ValueError("InpaintingUNet: give masked_image and mask together (or neither)")
        if mask is None:
            known = torch.zeros_like(x)
            mask = torch.zeros_like(x[:, :1])
        else:
            if mask.shape != (x.shape[0], 1, *x.shape[2:]):
                raise ValueError(f"InpaintingUNet: mask must have shape [{x.shape[0]}, 1, {x.shape[2]}, {x.shape[3]}], "
                                 f"got {tuple(mask.shape)}")
            mask = mask.to(x.dtype)
            known = masked_image.to(x.dtype) * mask
        return self.unet(torch.cat([x, known, mask], dim=1), t, **kwargs)

    @torch.no_grad()
    def load_base(self, base: UNet | dict) -> None:
        """Start from a trained base U-Net (or its ``state_dict``): every weight copied, the input
        convolution's weights for the extra channels set to zero (GLIDE §4.3), so the output equals
        the base model's for any known image and mask."""
        state = base.state_dict() if isinstance(base, nn.Module) else dict(base)
        own = self.unet.state_dict()
        conv_key = "input_conv.weight"  # the U-Net's first 3×3 convolution (the only layer that sees the input)
        missing = sorted(set(own) - set(state))
        if missing:
            raise ValueError(f"InpaintingUNet.load_base: the base network lacks {missing[:3]} (another architecture?)")
        widened = torch.zeros_like(own[conv_key])
        base_conv = state[conv_key]
        if base_conv.shape[1] != self.in_channels or base_conv.shape[0] != widened.shape[0]:
            raise ValueError(f"InpaintingUNet.load_base: the base input conv has shape {tuple(base_conv.shape)}, "
                             f"expected [{widened.shape[0]}, {self.in_channels}, ...]")
        widened[:, : self.in_channels] = base_conv
        self.unet.load_state_dict({**{k: state[k] for k in own}, conv_key: widened})

    @classmethod
    def from_base(cls, base: UNet, **unet_kwargs) -> "InpaintingUNet":
        """An inpainting network initialised from ``base`` (built with the same ``unet_kwargs``)."""
        net = cls(in_channels=base.in_channels, **unet_kwargs)
        net.load_base(base)
        return net
