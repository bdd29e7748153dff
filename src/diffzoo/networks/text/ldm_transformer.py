"""LDM's text encoder τ_θ for text-to-image (Rombach et al. 2022, §4.3.1: "a transformer ... on BERT
tokens"; CompVis ``BERTEmbedder`` = x-transformers ``TransformerWrapper(Encoder(dim, depth))``, trained
jointly with the U-Net, ``cond_stage_trainable: true``).

Layout (``ldm/modules/x_transformer.py`` defaults): token and learned absolute position embeddings
(N(0, 0.02²)), ``depth`` pre-LayerNorm layers of multi-head self-attention (8 heads of 64: the inner width
is 512 whatever the model width; ``to_q / to_k / to_v`` without bias, ``to_out`` with) and a GELU
feed-forward of width 4·d, a final LayerNorm; the U-Net cross-attends to all ``L`` output states (no mask).
The official wrapper also builds an unused vocabulary head ``to_logits`` (d·V + V parameters, never called
with ``return_embeddings=True``); it is left out here.

Captions are tokenised by the data set's tokenizer (:meth:`set_tokenizer`), as
:class:`~diffzoo.networks.text.glide.GlideTextTransformer`; LDM used BERT's WordPiece vocabulary (30522).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import TextEncoder, TextEncoding, _as_list, masked_mean

__all__ = ["LDMTextTransformer", "X_TRANSFORMERS_HEADS", "X_TRANSFORMERS_DIM_HEAD"]

X_TRANSFORMERS_HEADS, X_TRANSFORMERS_DIM_HEAD = 8, 64  # x-transformers AttentionLayers(heads=8), DEFAULT_DIM_HEAD


class _Layer(nn.Module):
    """``x += W_o·attn(LN(x))`` (heads × d_head inner width), then ``x += FF(LN(x))`` with a GELU FF of width 4·d."""

    def __init__(self, dim: int, heads: int, d_head: int):
        super().__init__()
        inner = heads * d_head
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        h = self.norm1(x)
        q, k, v = (m(h).view(B, L, self.heads, -1).transpose(1, 2) for m in (self.to_q, self.to_k, self.to_v))
        x = x + self.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, -1))
        return x + self.ff(self.norm2(x))


class LDMTextTransformer(TextEncoder):
    """LDM's jointly trained text Transformer (module docstring).

    Args:
        vocab_size: token ids (LDM: BERT's 30522). context_length: ``L`` (LDM: 77).
        width: ``d`` (txt2img-1p4B: 1280). layers: depth (txt2img-1p4B: 32).
        heads, dim_head: self-attention heads and their width (x-transformers defaults 8 × 64).
        tokenizer: captions → ids (the captioned data set's; or :meth:`set_tokenizer`).
        pad_id: padding id (the default mask is ``tokens != pad_id``).

    ``encoder(captions)`` → :class:`TextEncoding` with ``states [B, L, width]``; ``pooled`` is the masked
    mean of the states (LDM uses no pooled vector; :class:`~diffzoo.networks.spatial_transformer.LDMUNet`
    ignores it).
    """

    trainable = True

    def __init__(self, vocab_size: int, context_length: int, width: int, layers: int,
                 heads: int = X_TRANSFORMERS_HEADS, dim_head: int = X_TRANSFORMERS_DIM_HEAD, tokenizer=None, pad_id: int = 0):
        super().__init__()
        for key, value in (("vocab_size", vocab_size), ("context_length", context_length), ("width", width),
                           ("layers", layers), ("heads", heads), ("dim_head", dim_head)):
            if int(value) < 1:
                raise ConfigError(f"text_encoder.{key} must be >= 1, got {value}")
        self.vocab_size, self.context_length, self.dim, self.pad_id = vocab_size, context_length, width, pad_id
        self.tokenizer = None
        self.token_emb = nn.Embedding(vocab_size, width)
        self.pos_emb = nn.Embedding(context_length, width)
        self.layers = nn.ModuleList(_Layer(width, heads, dim_head) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        if not self.token_emb.weight.is_meta:
            nn.init.normal_(self.token_emb.weight, std=0.02)  # TransformerWrapper.init_
            nn.init.normal_(self.pos_emb.weight, std=0.02)  # AbsolutePositionalEmbedding.init_
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)

    def set_tokenizer(self, tokenizer) -> None:
        """Use ``tokenizer`` (``encode(captions) → [B, L]``, ``vocab_size``, ``context_length``) for captions."""
        if tokenizer.vocab_size > self.vocab_size or tokenizer.context_length != self.context_length:
            raise ConfigError(f"text_encoder.vocab_size ({self.vocab_size}) / context_length ({self.context_length}) "
                              f"do not fit the tokenizer's ({tokenizer.vocab_size}, {tokenizer.context_length})")
        self.tokenizer = tokenizer

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        if self.tokenizer is None:
            raise ConfigError("LDMTextTransformer has no tokenizer: call set_tokenizer(the data set's tokenizer)")
        return self.tokenizer.encode(_as_list(captions))

    def encode_tokens(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> TextEncoding:
        """``tokens [B, L]`` → :class:`TextEncoding` (states of every position; ``mask`` only marks the words)."""
        if mask is None and self.tokenizer is not None:
            mask = self.tokenizer.mask(tokens)
        mask = self._default_mask(tokens, mask)
        L = tokens.shape[1]
        if L > self.context_length:
            raise ValueError(f"LDMTextTransformer: at most {self.context_length} tokens, got {L}")
        x = self.token_emb(tokens.long()) + self.pos_emb.weight[:L][None]
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return TextEncoding(tokens, x, mask, masked_mean(x, mask))
