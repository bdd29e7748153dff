"""GLIDE's text Transformer, trained jointly with the diffusion model (Nichol et al. 2021, §2.3, §4.1).

The caption becomes ``K = context_length`` tokens, right-padded; a Transformer turns them into
token states. Facts of the released code (glide-text2im ``text2im_model.py::get_text_emb`` and
``xf.py``), kept here:

* input = token embedding + learned positional embedding; at padding positions the whole input is
  replaced by a **learned per-position padding embedding** (``xf_padding=True``);
* the Transformer is **unmasked**: every position, padding included, attends to every other;
  residual pre-LayerNorm blocks (CLIP's text tower): ``x += attn(LN(x))``, ``x += MLP(LN(x))``
  with a 4× GELU MLP; a final LayerNorm (``xf_final_ln=True``);
* the pooled vector is ``xf_out[:, -1]``: the state at the **last position of the padded
  sequence** (index ``L − 1``), which for a short caption is a padding position, not the last word.
  The U-Net projects it to its time-embedding width (``transformer_proj``) and adds it there; it
  also projects all ``L`` states into every attention layer's key / value context (``encoder_kv``).
  Those projections belong to the U-Net: this module returns the raw states and ``states[:, -1]``.

Sizes: the released base model (``model_creation.py`` defaults) is 512 wide, 16 layers, 8 heads,
128 tokens, vocabulary 50257 (GPT-2's BPE): 76,301,824 parameters here, 76,695,808 ≈ 76.70M with
the U-Net's ``transformer_proj`` (512 → 4·192 = 768) that the released count puts on the text side.
The paper's model is 24 layers of width 2048 (§4.1: "24 residual blocks of width 2048").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import TextEncoder, TextEncoding, _as_list

__all__ = ["GlideBlock", "GlideTextTransformer", "Tokenizer"]


class Tokenizer(Protocol):
    """What GLIDE's encoder needs from a tokenizer — the captioned data sets' word-level
    ``diffzoo.data.captions.WordTokenizer`` is one. glide-text2im uses GPT-2's byte-level BPE
    (vocabulary 50257), which is not available offline."""

    vocab_size: int
    context_length: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``B`` captions → int64 ``[B, context_length]``, right-padded."""

    def mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """bool ``[B, L]``: True at real tokens."""


class GlideBlock(nn.Module):
    """One residual pre-LN block (glide-text2im ``xf.py::ResidualAttentionBlock``):
    ``x ← x + Attn(LN₁(x))``, ``x ← x + W₂ GELU(W₁ LN₂(x))``, unmasked multi-head attention."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, L, width]`` → ``[B, L, width]``."""
        B, L, C = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        # softmax(q kᵀ / √d_head) v over all L positions: no attention mask (xf.py)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, C)
        x = x + self.attn_out(h)
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class GlideTextTransformer(TextEncoder):
    """GLIDE's jointly trained text encoder (see the module docstring for the released-code facts).

    Args:
        vocab_size: size of the token embedding (≥ the tokenizer's vocabulary; 50257 released).
        context_length: ``L``, the padded caption length (128 released).
        width: ``d`` (512 released; 2048 in the paper).
        layers: residual blocks (16 released; 24 in the paper).
        heads: attention heads (8 released); must divide ``width``.
        final_ln: LayerNorm after the last block (True released).
        learned_padding: padding positions get a learned per-position embedding (True released);
            False feeds them the pad token's embedding plus position like any other token.
        tokenizer: captions → ids (:class:`Tokenizer`, e.g. the captioned data set's word
            tokenizer; also settable later with :meth:`set_tokenizer`); only :meth:`forward` on
            strings needs it. Its ``mask`` is the default mask of :meth:`encode_tokens`.
        pad_id: the padding id that makes the default mask without a tokenizer
            (``tokens != pad_id``).

    ``encoder(captions)`` → :class:`TextEncoding` with ``states [B, L, width]`` (padding positions
    included: the U-Net attends to all ``L``), ``mask`` True on words and
    ``pooled = states[:, L − 1]``.
    """

    trainable = True

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        width: int,
        layers: int,
        heads: int,
        final_ln: bool = True,
        learned_padding: bool = True,
        tokenizer: Tokenizer | None = None,
        pad_id: int = 0,
    ):
        super().__init__()
        for key, value in (("vocab_size", vocab_size), ("context_length", context_length),
                           ("width", width), ("layers", layers), ("heads", heads)):
            if int(value) < 1:
                raise ConfigError(f"text_encoder.{key} must be >= 1, got {value}")
        if width % heads:
            raise ConfigError(f"text_encoder.heads ({heads}) must divide text_encoder.width ({width})")
        self.vocab_size, self.context_length, self.dim = vocab_size, context_length, width
        self.learned_padding = learned_padding
        self.pad_id = pad_id
        self.tokenizer = None
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.padding_embedding = nn.Parameter(torch.empty(context_length, width)) if learned_padding else None
        self.blocks = nn.ModuleList(GlideBlock(width, heads) for _ in range(layers))
        self.final_ln = nn.LayerNorm(width) if final_ln else None
        self.reset_embeddings()
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)

    def reset_embeddings(self) -> None:
        """CLIP's text-tower initialisation (Radford et al. 2021, code ``initialize_parameters``):
        token embedding N(0, 0.02²), positional N(0, 0.01²); the padding embedding like the
        positional one (glide-text2im leaves it to the checkpoint)."""
        if self.token_embedding.weight.is_meta:
            return
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if self.padding_embedding is not None:
            nn.init.normal_(self.padding_embedding, std=0.01)

    def set_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Use ``tokenizer`` for :meth:`forward`; its vocabulary must fit the embedding and its
        context length must be ``context_length``."""
        if tokenizer.vocab_size > self.vocab_size:
            raise ConfigError(
                f"text_encoder.vocab_size ({self.vocab_size}) is smaller than the tokenizer's vocabulary "
                f"({tokenizer.vocab_size}): set text_encoder.vocab_size >= {tokenizer.vocab_size}"
            )
        if tokenizer.context_length != self.context_length:
            raise ConfigError(
                f"text_encoder.context_length ({self.context_length}) differs from the tokenizer's "
                f"context length ({tokenizer.context_length}): set them equal"
            )
        self.tokenizer = tokenizer

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        if self.tokenizer is None:
            raise ConfigError(
                "GlideTextTransformer has no tokenizer: call set_tokenizer(the data set's tokenizer), "
                "or pass token ids to encode_tokens"
            )
        return self.tokenizer.encode(_as_list(captions))

    def encode_tokens(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> TextEncoding:
        """``tokens [B, L]`` (``L = context_length``), ``mask [B, L]`` → :class:`TextEncoding`."""
        if mask is None and self.tokenizer is not None:
            mask = self.tokenizer.mask(tokens)
        mask = self._default_mask(tokens, mask)
        if tokens.shape[1] != self.context_length:
            raise ValueError(f"GlideTextTransformer: tokens must have L = {self.context_length}, got {tokens.shape[1]}")
        x = self.token_embedding(tokens.long()) + self.positional_embedding[None]
        if self.padding_embedding is not None:
            # padding positions take the learned padding embedding instead (get_text_emb, xf_padding)
            x = torch.where(mask[..., None], x, self.padding_embedding[None].to(x.dtype))
        for block in self.blocks:
            x = block(x)
        if self.final_ln is not None:
            x = self.final_ln(x)
        # pooled = the last padded position, xf_out[:, -1] (get_text_emb), not the last word
        return TextEncoding(tokens, x, mask, x[:, -1])
