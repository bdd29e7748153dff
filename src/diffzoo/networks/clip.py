"""CLIP (Radford et al. 2021): an image tower and a text tower mapped into one embedding space.

unCLIP (Ramesh et al. 2022) is built on CLIP's two embeddings: the image embedding ``z_i`` that the
decoder inverts and the text embedding ``z_t`` (with the text's token states) that the prior reads.
This module holds the towers a CPU can train here and the interface unCLIP uses:

==========================================  ===================================================
call                                        result
==========================================  ===================================================
``clip.encode_image(x [B, C, H, W])``       ``z_i [B, e]``, unit L2 norm (CLIP Fig. 3, ``l2_normalize``)
``clip.encode_text(captions)``              :class:`ClipText`: ``embedding z_t [B, e]`` (unit norm),
                                            ``states [B, L, d]`` and ``mask [B, L]`` of the text tower
``clip.encode_tokens(tokens [B, L])``       the same from a pre-tokenised batch
``clip.logits(z_i, z_t)``                   ``exp(t) · z_i z_tᵀ`` ``[B, B]`` (Fig. 3, learned temperature)
``clip.zero_shot_logits(x, prompts, y)``    ``[B, K]`` cosine similarity to each class's mean prompt embedding
==========================================  ===================================================

* :class:`ConvImageTower`: a small CNN (a ViT is not built here) → mean pool → linear projection.
* The text tower is any :class:`~diffzoo.networks.text.TextEncoder`: its ``pooled`` vector is
  linearly projected (CLIP §2.4: "a linear projection to map from each encoder's representation to
  the multi-modal embedding space"). A trainable encoder (GLIDE's Transformer, from scratch) trains
  with the projection; a frozen one (MiniLM) gives a LiT-style tower (Zhai et al. 2022: locked
  text weights, only the projection learns).
* The temperature is a learned log-scale, initialised to 1 / 0.07 and clipped at 100 (CLIP §2.5).
* :class:`OpenCLIPModel` gives the same interface over an ``open_clip`` model (``pip install
  diffzoo[clip]``), for users who have its weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .text import TextEncoder

__all__ = ["CLIP", "ClipText", "ConvImageTower", "OpenCLIPModel", "class_embeddings", "retrieve"]

INIT_TEMPERATURE = 0.07  # CLIP §2.5: "initialized to the equivalent of 0.07"
MAX_LOGIT_SCALE = 100.0  # CLIP §2.5: "clipped to prevent scaling the logits by more than 100"


class ClipText(NamedTuple):
    """A caption batch through the text tower.

    Attributes:
        embedding: ``z_t`` float ``[B, e]``, unit L2 norm.
        states: float ``[B, L, d]`` the text tower's last token states (unCLIP's "encoded text").
        mask: bool ``[B, L]``, True on real tokens.
    """

    embedding: torch.Tensor
    states: torch.Tensor
    mask: torch.Tensor


class ConvImageTower(nn.Module):
    """A small CNN image encoder: ``x [B, C, H, W]`` → ``[B, embed_dim]`` (not normalised).

    3×3 conv → GELU stages; each stage after the first halves the resolution (stride 2); the last
    feature map is mean-pooled and projected linearly (CLIP §2.4's projection).

    Args:
        in_channels: image channels ``C``.
        image_size: ``H = W`` (recorded for the builder's data check).
        widths: channels of each stage, e.g. ``[32, 64, 128]``.
        embed_dim: ``e``.
    """

    def __init__(self, in_channels: int, image_size: int, widths: Sequence[int], embed_dim: int):
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ConfigError(f"net.image_tower.widths must be a non-empty list of positive ints, got {widths}")
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        layers, cin = [], self.in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, stride=1 if i == 0 else 2, padding=1), nn.GroupNorm(min(8, w), w), nn.GELU()]
            cin = w
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, int(embed_dim), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` in ``[-1, 1]`` → ``[B, embed_dim]``."""
        return self.proj(self.features(x).mean(dim=(2, 3)))


def class_embeddings(prompt_embeddings: torch.Tensor, prompt_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Prompt ensembling (CLIP §3.1.4): the mean of each class's unit prompt embeddings,
    renormalised. ``prompt_embeddings [P, e]``, ``prompt_labels`` int ``[P]`` in ``0 … K−1`` →
    ``[K, e]`` unit vectors (a class without prompts is an error)."""
    counts = torch.bincount(prompt_labels.long().cpu(), minlength=num_classes)
    if bool((counts == 0).any()):
        raise ValueError(f"class_embeddings: classes {torch.nonzero(counts == 0).flatten().tolist()} have no prompt")
    sums = torch.zeros(num_classes, prompt_embeddings.shape[1], dtype=prompt_embeddings.dtype, device=prompt_embeddings.device)
    sums.index_add_(0, prompt_labels.long().to(prompt_embeddings.device), prompt_embeddings)
    return F.normalize(sums, dim=-1)


@torch.no_grad()
def retrieve(clip: nn.Module, images: torch.Tensor, queries: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Nearest-neighbour retrieval: for each query embedding ``queries [Q, e]``, the index (int64
    ``[Q]``) of the image of ``images [N, C, H, W]`` whose CLIP embedding has the largest dot product with it."""
    bank = torch.cat([clip.encode_image(images[i: i + chunk]) for i in range(0, len(images), chunk)])
    return (queries.to(bank.dtype) @ bank.T).argmax(-1)


class _ClipInterface(nn.Module):
    """What unCLIP needs of a CLIP model; subclasses implement :meth:`encode_image` and :meth:`encode_text`."""

    embed_dim: int

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_text(self, captions: Sequence[str]) -> ClipText:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def zero_shot_logits(self, x: torch.Tensor, prompts: Sequence[str], prompt_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Zero-shot classification (CLIP §3.1.2): cosine similarity ``[B, K]`` of each image
        ``x [B, C, H, W]`` to each class's ensembled prompt embedding (``prompts``: ``P`` strings,
        ``prompt_labels`` int ``[P]``)."""
        z_i = self.encode_image(x)
        z_c = class_embeddings(self.encode_text(list(prompts)).embedding, prompt_labels, num_classes)
        return z_i @ z_c.to(z_i.dtype).T


class CLIP(_ClipInterface):
    """A contrastive image–text model trained here (see the module docstring).

    Args:
        image_tower: ``x [B, C, H, W]`` → ``[B, embed_dim]`` (e.g. :class:`ConvImageTower`).
        text_encoder: a :class:`~diffzoo.networks.text.TextEncoder` (trainable or frozen).
        embed_dim: ``e``, the joint embedding width.
        init_temperature: the initial softmax temperature τ (logit scale ``1/τ``; 0.07 in CLIP).
    """

    def __init__(self, image_tower: nn.Module, text_encoder: TextEncoder, embed_dim: int, init_temperature: float = INIT_TEMPERATURE):
        super().__init__()
        if not 1.0 / MAX_LOGIT_SCALE <= float(init_temperature) <= 1.0:
            raise ConfigError(f"net.init_temperature must lie in [{1 / MAX_LOGIT_SCALE}, 1], got {init_temperature}")
        self.image_tower = image_tower
        self.text_encoder = text_encoder
        self.embed_dim = int(embed_dim)
        self.text_proj = nn.Linear(text_encoder.dim, self.embed_dim, bias=False)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / float(init_temperature))))
        self.in_channels = getattr(image_tower, "in_channels", None)
        self.image_size = getattr(image_tower, "image_size", None)

    @property
    def text_dim(self) -> int:
        """``d``, the width of the text tower's token states."""
        return self.text_encoder.dim

    @property
    def logit_scale(self) -> torch.Tensor:
        """``exp(t)`` clipped at 100 (CLIP §2.5), a scalar tensor."""
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` in ``[-1, 1]`` → ``z_i [B, e]``, unit norm."""
        return F.normalize(self.image_tower(x), dim=-1)

    def _text(self, encoding) -> ClipText:
        return ClipText(F.normalize(self.text_proj(encoding.pooled), dim=-1), encoding.states, encoding.mask)

    def encode_text(self, captions: Sequence[str]) -> ClipText:
        """``B`` captions → :class:`ClipText` (``z_t [B, e]`` unit norm, states, mask)."""
        return self._text(self.text_encoder(list(captions)))

    def encode_tokens(self, tokens: torch.Tensor) -> ClipText:
        """A tokenised batch ``tokens [B, L]`` → :class:`ClipText`."""
        return self._text(self.text_encoder.encode_tokens(tokens))

    def logits(self, z_i: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        """Scaled pairwise cosine similarities ``exp(t) · z_i z_tᵀ`` ``[B_i, B_t]`` (CLIP Fig. 3)."""
        return self.logit_scale * z_i @ z_t.T

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` and their captions' tokens ``[B, L]`` → logits per image ``[B, B]``."""
        return self.logits(self.encode_image(x), self.encode_tokens(tokens).embedding)


class OpenCLIPModel(_ClipInterface):
    """An ``open_clip`` CLIP model behind the interface above (``pip install diffzoo[clip]``).

    Images come in ``[-1, 1]`` at any size; they are resized (bicubic) to the model's input size
    and normalised with the model's mean / std. Token states are the text transformer's
    ``ln_final`` output (the states CLIP's text projection reads at the end-of-text token), so the
    unCLIP prior can attend to them. Only ``open_clip``'s plain ``CLIP`` class is supported (not
    the ``CustomTextCLIP`` of Hugging Face text towers).

    Args:
        model: an ``open_clip.model.CLIP``.
        tokenizer: ``open_clip.get_tokenizer(name)`` or any callable ``list[str] → [B, L]``.
    """

    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        for attr in ("visual", "token_embedding", "transformer", "ln_final", "text_projection"):
            if not hasattr(model, attr):
                raise ConfigError(f"OpenCLIPModel: the model has no {attr!r}; only open_clip's plain CLIP class is supported")
        self.model, self.tokenizer = model, tokenizer
        proj = model.text_projection
        self.embed_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])
        self.text_dim = int(model.token_embedding.weight.shape[1])
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.in_channels = 3
        mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's
        std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def load(cls, name: str, pretrained: str | None = None, **kwargs) -> "OpenCLIPModel":
        """``open_clip.create_model(name, pretrained)`` and its tokenizer (weights are the user's)."""
        open_clip = _import_open_clip()
        model = open_clip.create_model(name, pretrained=pretrained, **kwargs)
        return cls(model.eval(), open_clip.get_tokenizer(name))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` in ``[-1, 1]`` (C = 1 or 3) → the model's normalised ``[B, 3, S, S]``."""
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` in ``[-1, 1]`` → ``z_i [B, e]``, unit norm."""
        return F.normalize(self.model.encode_image(self.preprocess(x)), dim=-1)

    def encode_text(self, captions: Sequence[str]) -> ClipText:
        """``B`` captions → :class:`ClipText`; ``z_t`` equals ``model.encode_text`` normalised."""
        m = self.model
        tokens = self.tokenizer(list(captions)).to(m.token_embedding.weight.device)
        x = m.token_embedding(tokens) + m.positional_embedding[: tokens.shape[1]]
        states = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))  # the first lines of CLIP.encode_text
        eot = tokens.argmax(dim=-1)  # the end-of-text token has the largest id (CLIP's "argmax" pooling)
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] <= eot[:, None]
        pooled = m.encode_text(tokens)
        return ClipText(F.normalize(pooled, dim=-1), states, mask)


def _import_open_clip():
    try:
        import open_clip
    except ImportError:
        raise ConfigError("OpenCLIPModel needs open_clip: pip install 'diffzoo[clip]'") from None
    return open_clip
