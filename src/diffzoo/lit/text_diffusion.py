"""``TextDiffusionModule``: a DiffusionModule whose network is conditioned on captions.

The batch's captions are encoded by a ``text_encoder`` part (``conf/text_encoder/``) into token
states, a mask and a pooled vector, which the U-Net takes as ``context`` / ``context_mask`` /
``pooled`` (:mod:`diffzoo.networks.text_attention`). Captions are dropped to the empty caption ""
with probability ``caption_drop_prob`` (classifier-free guidance, Ho & Salimans 2022 Alg. 1 line 3;
GLIDE §3 drops 20 %), so ``""`` is the null condition of :meth:`denoiser`.

* A trainable encoder (GLIDE's Transformer, ``encoder.trainable``) is trained jointly: its
  parameters join the optimizer, it has a weight EMA of its own, and the network attends to all
  ``L`` positions (``context_mask=None``, as glide-text2im: its padding states are learned).
* A frozen encoder (Imagen's, MiniLM / T5) is never trained: it stays out of the optimizer and the
  EMA, and its zero padding states are masked (``context_mask`` = the encoder's mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.captions import EMPTY_CAPTION, drop_captions
from ..denoisers import Denoiser
from ..optim.ema import EMA
from .diffusion import DiffusionModule

__all__ = ["TextDiffusionModule", "caption_list", "data_tokenizer"]


def caption_list(text: Sequence[str] | str | None, n: int) -> list[str]:
    """The ``n`` captions of a batch: one caption repeated, a list checked for length, or — None — the
    empty caption, the unconditional input the model was trained on."""
    text = EMPTY_CAPTION if text is None else text
    captions = [text] * n if isinstance(text, str) else list(text)
    if len(captions) != n:
        raise ValueError(f"text: got {len(captions)} captions for a batch of {n}")
    return captions


def data_tokenizer(data):
    """The caption tokenizer of a captioned data module (``model.tokenizer`` of a config: built
    without loading data, so a checkpoint rebuilt from its config tokenizes captions as in training)."""
    return data.tokenizer


class TextDiffusionModule(DiffusionModule):
    """A text-conditional discrete-time diffusion model (GLIDE §3, Imagen §2).

    Args:
        text_encoder: a :class:`~diffzoo.networks.text.TextEncoder`; its ``dim`` must equal ``net.text_encoder_dim`` (default ``net.text_dim``).
        caption_drop_prob: probability of replacing a training caption by ``""`` (seeded per step,
            stream ``"caption_drop"``, like the label dropout of :class:`DiffusionModule`).
        tokenizer: the caption tokenizer of a trainable encoder (the data set's); when None it is
            taken from the trainer's data module at ``setup``.
        **kwargs: the :class:`DiffusionModule` arguments (``conditional`` must stay false).
    """

    PARTS = DiffusionModule.PARTS + ("text_encoder",)

    def __init__(self, *args, text_encoder: nn.Module, caption_drop_prob: float = 0.0, tokenizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        net = self.net
        if getattr(net, "text_dim", None) is None:
            raise ValueError("model=text_diffusion needs a text-conditional network: set net.text_dim")
        encoder_dim = getattr(net, "text_encoder_dim", net.text_dim)
        if encoder_dim != text_encoder.dim:
            raise ValueError(f"the network takes text states of width {encoder_dim} (net.text_encoder_dim, else "
                             f"net.text_dim) but the text encoder emits {text_encoder.dim}: set net.text_encoder_dim="
                             f"{text_encoder.dim} (a learned projection to net.text_dim) or net.text_dim={text_encoder.dim}")
        if not 0.0 <= float(caption_drop_prob) < 1.0:
            raise ValueError(f"model.caption_drop_prob must lie in [0, 1), got {caption_drop_prob}")
        if self.conditional:
            raise ValueError("model.conditional must be false for text conditioning (the condition is the caption)")
        self.text_encoder = text_encoder
        self.caption_drop_prob = float(caption_drop_prob)
        self.trainable_text = bool(getattr(text_encoder, "trainable", True))
        if tokenizer is not None:
            text_encoder.set_tokenizer(tokenizer)  # before the EMA copy is made, so both have it
        ema_decay = self.ema.decay if self.ema is not None else None
        self.text_ema = (EMA(text_encoder, decay=ema_decay, warmup=self.ema.warmup)
                         if self.trainable_text and ema_decay is not None else None)

    # ------------------------------------------------------------------ parts
    def setup(self, stage: str) -> None:
        """Give a trainable encoder without a tokenizer the data module's (captions → ids)."""
        encoder = self.text_encoder
        if self.trainable_text and getattr(encoder, "tokenizer", "n/a") is None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            if dm is not None and hasattr(dm, "tokenizer"):
                encoder.set_tokenizer(dm.tokenizer)
                if self.text_ema is not None:
                    self.text_ema.shadow.set_tokenizer(dm.tokenizer)

    def trainable_parameters(self):
        """The network's parameters, and the text encoder's when it is trained jointly."""
        params = list(self.net.parameters())
        return params + list(self.text_encoder.parameters()) if self.trainable_text else params

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.text_ema is not None:
            self.text_ema.update(self.text_encoder)

    def num_parameters(self) -> int:
        """Trained parameters: the network's, plus a jointly trained encoder's."""
        return sum(p.numel() for p in self.trainable_parameters())

    # ------------------------------------------------------------------ conditioning
    def _context(self, encoding) -> dict:
        """A :class:`TextEncoding` as the network's keyword inputs."""
        mask = None if self.trainable_text else encoding.mask
        return {"context": encoding.states, "context_mask": mask, "pooled": encoding.pooled}

    def _drop_mask(self, n: int) -> torch.Tensor:
        """bool ``[n]``: which captions become "" (CFG Alg. 1, line 3), seeded per step like the labels'."""
        gen = torch.Generator().manual_seed(self.step_seed("caption_drop"))
        return torch.rand(n, generator=gen) < self.caption_drop_prob

    def _encode_batch(self, batch: dict) -> dict:
        """The batch's captions (dropped to "" at ``caption_drop_prob``) as the network's text inputs:
        a trainable encoder reads the batch's ``tokens``, a frozen one its ``text``."""
        text, tokens = list(batch["text"]), batch.get("tokens")
        if self.caption_drop_prob > 0:
            drop = self._drop_mask(len(text))
            if tokens is None or not self.trainable_text:
                text = [EMPTY_CAPTION if d else t for t, d in zip(text, drop.tolist())]
            else:
                empty = self.text_encoder.tokenize([EMPTY_CAPTION])[0]
                text, tokens = drop_captions(text, tokens, drop, empty)
        if self.trainable_text:
            return self._context(self.text_encoder.encode_tokens(tokens) if tokens is not None else self.text_encoder(text))
        with torch.no_grad():
            return self._context(self.text_encoder(text))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        out = self.objective(self.net, self.schedule, x0, **self._encode_batch(batch))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The network (and a trained encoder; EMA weights by default) as a :class:`Denoiser` taking
        the condition ``text`` (``list[str]`` of length B, or one ``str`` for every sample; none = "");
        with caption dropout its ``null_cond`` is ``{"text": ""}`` (classifier-free guidance)."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net
        encoder = self.text_ema.shadow if (use_ema and self.text_ema is not None) else self.text_encoder

        def net_fn(x: torch.Tensor, tau: torch.Tensor, text: Sequence[str] | str | None = None) -> torch.Tensor:
            return net(x, tau, **self._context(encoder(caption_list(text, x.shape[0]))))

        null = {"text": EMPTY_CAPTION} if self.caption_drop_prob > 0 else None
        return Denoiser(net_fn, self.schedule, self.prediction, cond_keys=("text",), null_cond=null)
