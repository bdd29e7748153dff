"""unCLIP's diffusion prior network (Ramesh et al. 2022, §2.2): a decoder-only causal Transformer
that predicts the clean CLIP image embedding ``z_i`` from its noised version.

§2.2: "a decoder-only Transformer with a causal attention mask on a sequence consisting of, in
order: the encoded text, the CLIP text embedding, an embedding for the diffusion timestep, the
noised CLIP image embedding, and a final embedding whose output from the Transformer is used to
predict the unnoised CLIP image embedding." The token sequence of one sample is therefore

    [ s_1 … s_L  |  z_t  |  emb(t)  |  z_i^(t)  |  query ]       (L + 4 tokens, causal mask)

and the output is read at the last (query) position. Padding text tokens are masked as keys.

The layout (parameter names included) is the one of diffusers' ``PriorTransformer`` (Karlo's
prior): pre-LN blocks ``x += Attn(LN(x))``, ``x += W₂ GELU(W₁ LN(x))`` (4× MLP), a learned
position embedding per token, a learned query ("prd") token, a final LayerNorm and a linear
projection to the embedding; the timestep enters through a cos-first sinusoidal embedding
(Vaswani et al. 2017 §3.5) and a two-layer SiLU MLP. Where diffusers differs, this module follows
the paper:

* diffusers applies the causal mask only when an ``attention_mask`` is passed (without one its
  prior attends bidirectionally); here the mask is always causal;
* diffusers projects text states of the embedding's width only; here ``text_dim`` may differ;
* diffusers' ``clip_mean`` / ``clip_std`` (Karlo's data statistics) are not part of the network:
  the embedding scaling is its own choice (:mod:`diffzoo.networks.embedding_scaling`).

Sizes: the paper's prior (App. C, Table 3) is width 2048, 24 blocks, 32 heads (1.23B here with a
77-token context; "1B" in the table); Karlo's is width 2048, 20 blocks, 32 heads (1.02B).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = ["PriorTransformer", "causal_prior_mask", "sinusoidal_embedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``t [B]`` → ``[B, dim]``: ``[cos(t ω_k), sin(t ω_k)]`` with ``ω_k = max_period^(−k / (dim/2))``
    (Vaswani et al. 2017 §3.5, cos first as diffusers' ``Timesteps(flip_sin_to_cos=True, shift=0)``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def causal_prior_mask(text_mask: torch.Tensor | None, batch: int, text_length: int, device=None) -> torch.Tensor:
    """bool ``[B, 1, N, N]`` (True = may attend), ``N = text_length + 4``: causal (query ``q`` sees
    keys ``k ≤ q``, §2.2) and blind to padded text keys (``text_mask [B, L]`` False); every query
    still sees itself, so no row is empty."""
    n = text_length + 4
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    keys = torch.ones(batch, n, dtype=torch.bool, device=device)
    if text_mask is not None:
        keys[:, :text_length] = text_mask.bool().to(device)
    mask = causal[None] & keys[:, None, :]
    return (mask | torch.eye(n, dtype=torch.bool, device=device)[None])[:, None]


class _GELUProj(nn.Module):
    """``GELU(W x + b)`` (diffusers' ``GELU`` activation module: exact GELU after a projection)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class _SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(width, width) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(width, width), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = (f(x).view(B, N, self.heads, C // self.heads).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # softmax(q kᵀ/√d_head + mask) v
        return self.to_out[1](self.to_out[0](h.transpose(1, 2).reshape(B, N, C)))


class PriorBlock(nn.Module):
    """One pre-LN residual block: ``x ← x + Attn(LN₁ x)``, ``x ← x + FF(LN₃ x)`` (4× GELU MLP)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn1 = _SelfAttention(width, heads, dropout)
        self.norm3 = nn.LayerNorm(width)
        self.ff = nn.Module()
        self.ff.net = nn.Sequential(_GELUProj(width, 4 * width), nn.Dropout(dropout), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, N, width]``, ``mask`` bool ``[B, 1, N, N]`` → ``[B, N, width]``."""
        x = x + self.attn1(self.norm1(x), mask)
        return x + self.ff.net(self.norm3(x))


class PriorTransformer(nn.Module):
    """The diffusion prior's network (see the module docstring).

    Args:
        embed_dim: ``e``, the CLIP embedding width (input ``z_i^(t)``, ``z_t`` and output).
        text_dim: ``d``, the width of the text tower's token states.
        text_length: ``L``, the number of text tokens.
        width: the Transformer width (2048 in the paper).
        layers: blocks (24 in the paper).
        heads: attention heads (32 in the paper); must divide ``width``.
        time_embed_dim: hidden width of the timestep MLP (default ``width``).
        dropout: attention / MLP dropout.
        norm_in: a LayerNorm on the token sequence before the blocks (Karlo's ``norm_in_type="layer"``).

    ``net(x, t, text_embedding, text_states, text_mask=None) → x̂₀ [B, e]`` for ``x [B, e]`` the
    noised (scaled) image embedding, ``t [B]`` (or a number) the model time, ``text_embedding
    [B, e]``, ``text_states [B, L, d]`` and ``text_mask`` bool ``[B, L]``.
    """

    def __init__(self, embed_dim: int, text_dim: int, text_length: int, width: int, layers: int, heads: int,
                 time_embed_dim: int | None = None, dropout: float = 0.0, norm_in: bool = False):
        super().__init__()
        for key, value in (("embed_dim", embed_dim), ("text_dim", text_dim), ("text_length", text_length),
                           ("width", width), ("layers", layers), ("heads", heads)):
            if int(value) < 1:
                raise ConfigError(f"net.{key} must be >= 1, got {value}")
        if width % heads:
            raise ConfigError(f"net.heads ({heads}) must divide net.width ({width})")
        self.embed_dim, self.text_dim, self.text_length, self.width = int(embed_dim), int(text_dim), int(text_length), int(width)
        self.dim = self.embed_dim  # one sample is a vector [e] (the builder's data check)
        time_embed_dim = int(time_embed_dim or width)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1 = nn.Linear(width, time_embed_dim)
        self.time_embedding.linear_2 = nn.Linear(time_embed_dim, width)
        self.proj_in = nn.Linear(embed_dim, width)  # noised z_i
        self.embedding_proj = nn.Linear(embed_dim, width)  # z_t
        self.encoder_hidden_states_proj = nn.Linear(text_dim, width)  # text token states
        self.positional_embedding = nn.Parameter(torch.empty(1, text_length + 4, width))
        self.prd_embedding = nn.Parameter(torch.empty(1, 1, width))  # the final query token
        self.norm_in = nn.LayerNorm(width) if norm_in else None
        self.transformer_blocks = nn.ModuleList(PriorBlock(width, heads, dropout) for _ in range(layers))
        self.norm_out = nn.LayerNorm(width)
        self.proj_to_clip_embeddings = nn.Linear(width, embed_dim)
        if not self.positional_embedding.is_meta:
            nn.init.normal_(self.positional_embedding, std=0.01)
            nn.init.normal_(self.prd_embedding, std=0.01)

    def tokens(self, x: torch.Tensor, t: torch.Tensor, text_embedding: torch.Tensor, text_states: torch.Tensor) -> torch.Tensor:
        """The input sequence ``[B, L + 4, width]`` in the order of §2.2 (before position embeddings)."""
        B = x.shape[0]
        temb = self.time_embedding.linear_2(F.silu(self.time_embedding.linear_1(sinusoidal_embedding(t, self.width).to(x.dtype))))
        return torch.cat([
            self.encoder_hidden_states_proj(text_states),   # encoded text  [B, L, w]
            self.embedding_proj(text_embedding)[:, None],   # CLIP text embedding
            temb[:, None],                                  # timestep embedding
            self.proj_in(x)[:, None],                       # noised CLIP image embedding
            self.prd_embedding.to(x.dtype).expand(B, -1, -1),  # final query
        ], dim=1)

    def forward(self, x: torch.Tensor, t, text_embedding: torch.Tensor, text_states: torch.Tensor,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """See the class docstring; returns the predicted clean embedding ``[B, e]``."""
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(B) if t.ndim == 0 else t
        if text_states.shape[1:] != (self.text_length, self.text_dim):
            raise ValueError(f"PriorTransformer: text_states must be [B, {self.text_length}, {self.text_dim}], "
                             f"got {tuple(text_states.shape)}")
        h = self.tokens(x, t, text_embedding, text_states) + self.positional_embedding.to(x.dtype)
        if self.norm_in is not None:
            h = self.norm_in(h)
        mask = causal_prior_mask(text_mask, B, self.text_length, x.device)
        for block in self.transformer_blocks:
            h = block(h, mask)
        return self.proj_to_clip_embeddings(self.norm_out(h)[:, -1])  # read at the query token
