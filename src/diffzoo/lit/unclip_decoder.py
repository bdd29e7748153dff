"""``UnCLIPDecoderModule``: unCLIP's decoder ``P(x | z_i, y)`` (Ramesh et al. 2022, §2.1).

A :class:`~diffzoo.lit.text_diffusion.TextDiffusionModule` (GLIDE: captions through a jointly
trained text Transformer, caption dropout) whose network is an
:class:`~diffzoo.networks.unclip_decoder.UnCLIPDecoderNet` and whose batches also carry the CLIP
image embedding of each training image, ``z_i = CLIP_image(x)`` from a fixed CLIP.

Classifier-free guidance (§2.1): "randomly setting the CLIP embeddings to zero (or a learned
embedding) 10 % of the time, and randomly dropping the text caption 50 % of the time during
training" — ``model.clip_drop_prob`` (0.1; §5.1 and Fig. 8 say 5 %: set 0.05 for that reading) and
``model.caption_drop_prob`` (0.5), drawn independently per example, seeded per step. The guided
model's unconditional input drops both (``null_cond = {"text": "", "clip_emb": NaN}``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.captions import EMPTY_CAPTION
from ..denoisers import Denoiser
from ..errors import ConfigError
from ..networks.unclip_decoder import DROPPED
from ..samplers import SampleBatch, SamplerSpec, sample_indices
from .clip import frozen_clip
from .text_diffusion import TextDiffusionModule

__all__ = ["UnCLIPDecoderModule"]


class UnCLIPDecoderModule(TextDiffusionModule):
    """The decoder (see the module docstring).

    Args:
        clip: the CLIP whose image embeddings condition the decoder (frozen).
        clip_ckpt: a ``CLIPModule`` checkpoint with its weights (None: the config's own, for a wiring check).
        clip_drop_prob: probability of dropping ``z_i`` to the learned null (0.1 §2.1; 0.05 §5.1).
        **kwargs: the :class:`TextDiffusionModule` arguments (``caption_drop_prob``: 0.5 in §2.1).
    """

    def __init__(self, *args, clip: nn.Module, clip_ckpt: str | None = None, clip_drop_prob: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self.net, "clip_dim", None) != clip.embed_dim:
            raise ConfigError(f"net.clip_dim={getattr(self.net, 'clip_dim', None)} does not fit the CLIP (model.clip): "
                              f"set net.clip_dim={clip.embed_dim}")
        if not 0.0 <= float(clip_drop_prob) < 1.0:
            raise ConfigError(f"model.clip_drop_prob must lie in [0, 1), got {clip_drop_prob}")
        self.clip = frozen_clip(clip, clip_ckpt)
        self.clip_drop_prob = float(clip_drop_prob)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    @torch.no_grad()
    def image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings ``z_i [B, e]`` of images ``x [B, C, H, W]`` in ``[-1, 1]``."""
        return self.clip.encode_image(x)

    def _clip_drop_mask(self, n: int) -> torch.Tensor:
        """bool ``[n]``: which embeddings become the learned null (seeded per step, stream ``clip_drop``)."""
        gen = torch.Generator().manual_seed(self.step_seed("clip_drop"))
        return torch.rand(n, generator=gen) < self.clip_drop_prob

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        z = self.image_embeddings(x0)
        if self.clip_drop_prob > 0:
            z = z.masked_fill(self._clip_drop_mask(len(z)).to(z.device)[:, None], DROPPED)
        out = self.objective(self.net, self.schedule, x0, clip_emb=z, **self._encode_batch(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The decoder as a :class:`Denoiser` taking ``text`` (captions; none = "") and ``clip_emb``
        (``[B, e]``; none or NaN rows = dropped); ``null_cond`` drops both (classifier-free guidance)."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net
        encoder = self.text_ema.shadow if (use_ema and self.text_ema is not None) else self.text_encoder

        def net_fn(x: torch.Tensor, tau: torch.Tensor, text: Sequence[str] | str | None = None,
                   clip_emb: torch.Tensor | None = None) -> torch.Tensor:
            text = EMPTY_CAPTION if text is None else text
            captions = [text] * x.shape[0] if isinstance(text, str) else list(text)
            if len(captions) != x.shape[0]:
                raise ValueError(f"text: got {len(captions)} captions for a batch of {x.shape[0]}")
            if clip_emb is not None and clip_emb.shape[0] == 1 and x.shape[0] > 1:
                clip_emb = clip_emb.expand(x.shape[0], -1)
            return net(x, tau, clip_emb=clip_emb, **self._context(encoder(captions)))

        guided = self.caption_drop_prob > 0 or self.clip_drop_prob > 0
        null = {"text": EMPTY_CAPTION, "clip_emb": DROPPED} if guided else None
        return Denoiser(net_fn, self.schedule, self.prediction, cond_keys=("text", "clip_emb"), null_cond=null)

    @torch.no_grad()
    def decode(self, z_i: torch.Tensor, captions: Sequence[str] | str | None = None, indices: Sequence[int] | None = None,
               seed: int = 0, sampler: SamplerSpec | None = None, steps: int | None = None, guidance=None,
               use_ema: bool = True, progress: bool = False) -> SampleBatch:
        """Images for image embeddings ``z_i [B, e]`` (and captions: ``B`` strings, one for all, or
        none = ""): sample ``indices[b]`` (default ``0 … B−1``) of the one sampling loop, so equal
        indices share their noise (interpolations) and different ones differ (variations)."""
        B = z_i.shape[0]
        captions = [captions or EMPTY_CAPTION] * B if captions is None or isinstance(captions, str) else list(captions)
        indices = list(range(B)) if indices is None else list(indices)
        spec = SamplerSpec.of(sampler) if sampler is not None else self.sampler
        if steps is not None:
            spec = spec.with_steps(steps)
        return sample_indices(self.denoiser(use_ema), spec, indices, seed, self.data_shape, device=self.device,
                              guidance=guidance, cond={"text": captions, "clip_emb": z_i.to(self.device)}, progress=progress)

    @torch.no_grad()
    def preview_samples(self, indices, seed: int, sampler: SamplerSpec | None = None, progress: bool = False) -> SampleBatch:
        """A run's closing grid: image variations — held-out image ``i``'s CLIP embedding decoded
        (with its caption) for each index ``i``."""
        dm = self.trainer.datamodule
        held = dm.eval_set("train")
        indices = list(indices)
        x = held.images()[[i % len(held) for i in indices]].to(self.device)
        captions = [held.text[i % len(held)] for i in indices]
        return self.decode(self.image_embeddings(x), captions, indices, seed, sampler=sampler, progress=progress)
