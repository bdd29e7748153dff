"""Attention blocks of a text-conditional U-Net: the image attends to a text context.

Two ways of feeding token states ``context [B, L, d_text]`` (with ``context_mask [B, L]``, True on
positions that may be attended) into the U-Net of :mod:`diffzoo.networks.unet`:

* :class:`ContextAttentionBlock` (GLIDE, Nichol et al. 2021 §2.3 / glide-text2im ``AttentionBlock``
  with ``encoder_channels``): a self-attention block whose keys and values are extended by a 1×1
  projection of the context (``encoder_kv``), the context's keys / values placed before the block's own.
* :class:`CrossAttentionBlock` (Imagen, Saharia et al. 2022 §2.4 "cross attention over the text
  embedding at multiple resolutions"; imagen-pytorch ``CrossAttention``): queries from the image,
  keys / values from the LayerNorm-ed text states, plus one learned null key / value so a row whose
  tokens are all masked still has something to attend to; the output projection starts at zero.

Both run the context-free path unchanged when ``context`` is ``None``. Networks know nothing of schedules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .attention import AttentionBlock, _norm

__all__ = ["ContextAttentionBlock", "CrossAttentionBlock", "TEXT_CONDITIONINGS"]

# the closed set of net.text_conditioning values; "pooled": only the pooled vector, added to the time
# embedding (the pooling baseline of Imagen App. D.3.1 / Fig. A.13a), no token states attended
TEXT_CONDITIONINGS = ("glide", "cross_attention", "pooled")


def _key_mask(context_mask: torch.Tensor | None, B: int, L: int, n_own: int, device) -> torch.Tensor | None:
    """Boolean ``[B, 1, 1, L + n_own]`` attention mask: the context's own mask then ``n_own`` always-on keys."""
    if context_mask is None:
        return None
    if context_mask.shape != (B, L):
        raise ValueError(f"context_mask must have shape [{B}, {L}], got {tuple(context_mask.shape)}")
    own = torch.ones(B, n_own, dtype=torch.bool, device=device)
    return torch.cat([context_mask.to(device=device, dtype=torch.bool), own], dim=1)[:, None, None, :]


class ContextAttentionBlock(AttentionBlock):
    """Self-attention with the text context as extra keys / values (GLIDE's ``encoder_kv``).

    ``k = [W_k^enc c; k_x]``, ``v = [W_v^enc c; v_x]`` per head, then the block's attention
    (Vaswani et al. 2017 eq. 1); masked context positions get no weight. Without ``context`` it is
    exactly :class:`~diffzoo.networks.unet.AttentionBlock` (same parameters but ``encoder_kv``).

    Shapes: ``x`` ``[B, C, H, W]``, ``context`` ``[B, L, text_dim]``, ``context_mask`` ``[B, L]`` → ``[B, C, H, W]``.
    """

    takes_context = True

    def __init__(self, channels: int, num_heads: int, num_groups: int, text_dim: int):
        super().__init__(channels, num_heads, num_groups)
        self.encoder_kv = nn.Linear(text_dim, 2 * channels)  # glide-text2im: conv_nd(1, encoder_channels, 2C, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            return super().forward(x)
        B, C, H, W = x.shape
        q, k, v = self.qkv_heads(x)
        L, heads = context.shape[1], self.num_heads
        ekv = self.encoder_kv(context.to(x.dtype)).view(B, L, heads, 2, C // heads).permute(3, 0, 2, 1, 4)
        k = torch.cat([ekv[0], k], dim=2)  # GLIDE QKVAttention: th.cat([ek, k], dim=-1)
        v = torch.cat([ekv[1], v], dim=2)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=_key_mask(context_mask, B, L, H * W, x.device))
        h = h.transpose(1, 2).reshape(B, H * W, C)
        out = F.linear(h, self.proj_out.weight.view(C, C), self.proj_out.bias)
        return x + out.transpose(1, 2).reshape(B, C, H, W)


class CrossAttentionBlock(nn.Module):
    """Residual cross-attention from the image to LayerNorm-ed text states (Imagen §2.4).

    ``x + W_o·attn(W_q GN(x), W_k [n; LN(c)], W_v [n; LN(c)])`` with ``n`` a learned null token
    (imagen-pytorch's ``null_kv``) that is never masked; ``W_o`` starts at zero, so a freshly built
    block is the identity. Without ``context`` it returns ``x``.

    Shapes: ``x`` ``[B, C, H, W]``, ``context`` ``[B, L, text_dim]``, ``context_mask`` ``[B, L]`` → ``[B, C, H, W]``.
    """

    takes_context = True

    def __init__(self, channels: int, num_heads: int, num_groups: int, text_dim: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"CrossAttentionBlock: {channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = _norm(channels, num_groups)
        self.text_norm = nn.LayerNorm(text_dim)  # Imagen: LayerNorm on the text states before attention
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(text_dim, 2 * channels)
        self.null_token = nn.Parameter(torch.randn(1, 1, text_dim) * 0.02)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            return x
        B, C, H, W = x.shape
        heads, d = self.num_heads, C // self.num_heads
        tokens = self.norm(x).reshape(B, C, H * W).transpose(1, 2)  # [B, H·W, C]
        q = self.q(tokens).view(B, H * W, heads, d).transpose(1, 2)
        ctx = torch.cat([self.null_token.expand(B, 1, -1), self.text_norm(context.to(x.dtype))], dim=1)
        L = ctx.shape[1]
        k, v = self.kv(ctx).view(B, L, 2, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None
        if context_mask is not None:  # the null token first, always attended
            mask = _key_mask(torch.ones(B, 1, dtype=torch.bool, device=x.device), B, 1, 0, x.device)
            mask = torch.cat([mask, _key_mask(context_mask, B, L - 1, 0, x.device)], dim=-1)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, H * W, C)
        return x + self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)


def check_text_args(text_dim, text_conditioning: str, cross_attention_resolutions, image_size: int, levels: int) -> None:
    """Raise a ConfigError naming the offending ``net.*`` text key."""
    if text_dim is not None and (int(text_dim) != text_dim or text_dim < 1):
        raise ConfigError(f"net.text_dim must be a positive integer or null, got {text_dim!r}")
    if text_conditioning not in TEXT_CONDITIONINGS:
        raise ConfigError(f"net.text_conditioning must be one of {list(TEXT_CONDITIONINGS)}, got {text_conditioning!r}")
    reachable = [image_size // 2**i for i in range(levels)]
    bad = [r for r in cross_attention_resolutions if r not in reachable]
    if bad:
        raise ConfigError(f"net.cross_attention_resolutions {bad} are not reached; the resolutions are {reachable}")
    if text_dim and text_conditioning == "cross_attention" and not cross_attention_resolutions:
        raise ConfigError("net.text_conditioning=cross_attention needs net.cross_attention_resolutions (e.g. [4]); "
                          "for the pooled vector alone set net.text_conditioning=pooled")
