"""``NoisedCLIPModule``: GLIDE's noised CLIP (Nichol et al. 2021, §4.4, App. B.1), trained here.

The contrastive loss of :class:`~diffzoo.lit.clip.CLIPModule` (CLIP Fig. 3) on noised images: each
training image is replaced by ``x_t = α_t x_0 + σ_t ε`` at a uniform step ``t`` of the *base diffusion
model's* schedule (the ``schedule`` part — use the guided model's), and the image tower sees ``x_t``
with the time input the base model's network sees (``schedule.timesteps[t]``). Zero-shot validation
runs on clean images (τ = 0). The result guides sampling through
:class:`~diffzoo.guidance.clip.CLIPGuidance`.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..networks.noised_clip import NoisedCLIP
from ..objectives import uniform_timesteps
from .clip import CLIPModule, clip_loss, same_caption_targets

__all__ = ["NoisedCLIPModule"]


class NoisedCLIPModule(CLIPModule):
    """Trains a :class:`~diffzoo.networks.noised_clip.NoisedCLIP` on ``x_t`` (module docstring).

    Args:
        schedule: the base diffusion model's forward process (a discrete schedule with ``q_sample``
            and ``timesteps``).
        **kwargs: the :class:`CLIPModule` arguments.
    """

    PARTS = CLIPModule.PARTS + ("schedule",)

    def __init__(self, net: NoisedCLIP, schedule, optimizer, lr_scheduler=None, **kwargs):
        if not isinstance(net, NoisedCLIP):
            raise ConfigError(f"model=noised_clip needs net._target_=diffzoo.networks.noised_clip.NoisedCLIP (got {type(net).__name__})")
        super().__init__(net, optimizer, lr_scheduler, **kwargs)
        self.schedule = schedule

    def batch_loss(self, batch: dict) -> torch.Tensor:
        """The contrastive loss of one caption batch with every image noised to a uniform step."""
        net, x0 = self.net, batch["x"]
        if not self.training:  # validation: the clean-image loss, comparable with a plain CLIP's
            return super().batch_loss(batch)
        t = uniform_timesteps(self.schedule.T, x0.shape[0], x0.device)
        x_t = self.schedule.q_sample(x0, t, torch.randn_like(x0))
        tau = self.schedule.timesteps.to(x0.device)[t].to(x0.dtype)
        z_t = net.encode_tokens(batch["tokens"]).embedding if net.text_encoder.trainable else net.encode_text(batch["text"]).embedding
        logits = net.logits(net.encode_image(x_t, tau), z_t)
        targets = same_caption_targets(list(batch["text"]), logits.device) if self.targets == "same_caption" else None
        return clip_loss(logits, targets)
