"""A small BERT encoder forward (Devlin et al. 2019, §3; Vaswani et al. 2017, §3), enough to run
pretrained BERT-family weights such as all-MiniLM-L6-v2 without the transformers package.

* embeddings: word + absolute position + token type 0, then LayerNorm (BERT §3, Fig. 2);
* each layer is post-LN (Vaswani et al. §3.1): ``h = LN(x + Attn(x))``, ``out = LN(h + W₂ GELU(W₁ h))``
  with exact (erf) GELU, the ``hidden_act: gelu`` of BERT's config;
* attention is masked on padding: a padding position is never attended to (its key is removed
  from every softmax), so a caption's real-token states do not depend on how far it is padded.

:func:`bert_state_dict` maps a Hugging Face ``BertModel`` state dict onto this module's names.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BertEncoder", "bert_state_dict"]


class BertLayer(nn.Module):
    """One post-LN encoder layer: masked multi-head self-attention, then a GELU MLP."""

    def __init__(self, width: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.attn_out = nn.Linear(width, width)
        self.ln_attn = nn.LayerNorm(width, eps=eps)
        self.fc = nn.Linear(width, ffn)
        self.proj = nn.Linear(ffn, width)
        self.ln_ffn = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x [B, L, d]``, ``keep [B, 1, 1, L]`` (True: may be attended to) → ``[B, L, d]``."""
        B, L, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, L, self.heads, d // self.heads).transpose(1, 2)

        # softmax(q kᵀ / √d_head + mask) v (Vaswani et al. eq. 1), padding keys excluded
        a = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=keep)
        h = self.ln_attn(x + self.attn_out(a.transpose(1, 2).reshape(B, L, d)))
        return self.ln_ffn(h + self.proj(F.gelu(self.fc(h))))


class BertEncoder(nn.Module):
    """BERT's embeddings and encoder stack (no pooler).

    Args:
        vocab_size, max_positions, type_vocab_size: embedding table sizes.
        width, layers, heads, ffn: hidden size, layers, attention heads, MLP width.
        eps: LayerNorm epsilon (BERT: 1e-12).
    """

    def __init__(self, vocab_size: int, max_positions: int, width: int, layers: int, heads: int, ffn: int,
                 type_vocab_size: int = 2, eps: float = 1e-12):
        super().__init__()
        self.word = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(max_positions, width)
        self.token_type = nn.Embedding(type_vocab_size, width)
        self.ln_embed = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(BertLayer(width, heads, ffn, eps) for _ in range(layers))

    @classmethod
    def from_config(cls, config: dict) -> BertEncoder:
        """Build from a Hugging Face BERT ``config.json`` (as a dict)."""
        if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("BertEncoder supports hidden_act 'gelu' with absolute positions only")
        return cls(config["vocab_size"], config["max_position_embeddings"], config["hidden_size"],
                   config["num_hidden_layers"], config["num_attention_heads"], config["intermediate_size"],
                   config.get("type_vocab_size", 2), config.get("layer_norm_eps", 1e-12))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``tokens [B, L]`` int64, ``mask [B, L]`` bool (True on real tokens) → last hidden state
        ``[B, L, width]`` (padding rows are computed but attend only to real tokens)."""
        L = tokens.shape[1]
        if L > self.position.num_embeddings:
            raise ValueError(f"BertEncoder: {L} tokens exceed its {self.position.num_embeddings} positions")
        positions = torch.arange(L, device=tokens.device)
        x = self.word(tokens) + self.position(positions)[None] + self.token_type.weight[0]
        x = self.ln_embed(x)
        keep = mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, keep)
        return x


# Hugging Face BertModel key → this module's key (the weights themselves are used unchanged).
_RENAMES = (
    (r"^embeddings\.word_embeddings\.", "word."),
    (r"^embeddings\.position_embeddings\.", "position."),
    (r"^embeddings\.token_type_embeddings\.", "token_type."),
    (r"^embeddings\.LayerNorm\.", "ln_embed."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.query\.", r"layers.\1.q."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.key\.", r"layers.\1.k."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.value\.", r"layers.\1.v."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn_out."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.ln_attn."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.fc."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.proj."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.ln_ffn."),
)
_UNUSED = re.compile(r"^(pooler\.|embeddings\.position_ids$)")  # BERT's [CLS] pooler; a constant buffer


def bert_state_dict(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``BertModel`` state dict (keys with or without a ``bert.`` prefix) for
    :class:`BertEncoder`; the pooler and ``position_ids`` are dropped, any other unknown key is an error."""
    out = {}
    for key, value in hf.items():
        key = key.removeprefix("bert.")
        if _UNUSED.match(key):
            continue
        for pattern, repl in _RENAMES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise KeyError(f"unexpected BERT weight {key!r}")
    return out
