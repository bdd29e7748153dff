"""The U-Net's GroupNorm and its residual self-attention block (DDPM ``attn_block``), shared by the
U-Net, the noise-aware classifier and the text-attention blocks (:mod:`diffzoo.networks.text_attention`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GROUPNORM_EPS", "GroupNorm32", "AttentionBlock"]

GROUPNORM_EPS = 1e-6  # the TF ``group_norm`` default used by the DDPM code


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in the parameters' dtype (float32 under mixed precision), cast back after (ADM's
    ``GroupNorm32``): under bf16 / fp16 autocast the statistics stay exact. Same parameters
    and state dict as ``nn.GroupNorm``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)


def _norm(channels: int, num_groups: int) -> nn.GroupNorm:
    return GroupNorm32(num_groups, channels, eps=GROUPNORM_EPS)


def _zero(layer: nn.Module) -> nn.Module:
    # DDPM init_scale=0 on the last layer of every residual branch and on the output conv.
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class AttentionBlock(nn.Module):
    """Residual multi-head self-attention over the ``H·W`` positions (DDPM ``attn_block``).

    ``x + proj(softmax(QKᵀ/√d)V)`` with ``Q, K, V`` 1×1 projections of ``GN(x)`` and ``d``
    the width of a head (Vaswani et al. 2017, eq. 1), computed by
    ``F.scaled_dot_product_attention``. Shapes: ``[B, C, H, W] → [B, C, H, W]``.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_groups: int = 32):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"AttentionBlock: {channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = _norm(channels, num_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        for w in self.qkv.weight.data.chunk(3):  # DDPM initialises q, k, v as separate layers
            nn.init.xavier_uniform_(w)
        nn.init.zeros_(self.qkv.bias)
        self.proj_out = _zero(nn.Conv2d(channels, channels, 1))

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``[B, C, H, W]`` → ``q, k, v``, each ``[B, heads, H·W, C / heads]``.

        The 1×1 convolution is applied as a matrix product over the positions (same weights,
        same result): faster than a 1×1 conv on small maps, and it leaves each head's features
        contiguous, which the fused attention kernels need."""
        B, C, H, W = x.shape
        tokens = self.norm(x).reshape(B, C, H * W).transpose(1, 2)  # [B, H·W, C]
        qkv = F.linear(tokens, self.qkv.weight.view(3 * C, C), self.qkv.bias)  # [B, H·W, 3C]
        qkv = qkv.view(B, H * W, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(dim=0)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = F.scaled_dot_product_attention(*self.qkv_heads(x))  # [B, heads, H·W, d]
        h = h.transpose(1, 2).reshape(B, H * W, C)  # heads concatenated per position
        out = F.linear(h, self.proj_out.weight.view(C, C), self.proj_out.bias)  # the 1×1 proj_out
        return x + out.transpose(1, 2).reshape(B, C, H, W)
