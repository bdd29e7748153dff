"""LDM's conditioning U-Net (Rombach et al. 2022, §3.3, Fig. 3): the ADM U-Net with a *SpatialTransformer*
in place of every self-attention block, through whose cross-attention a token sequence ``τ_θ(y)`` enters.

* :class:`SpatialTransformer` (CompVis ``ldm/modules/attention.py``): GroupNorm, a 1×1 ``proj_in`` to
  ``heads·d_head`` channels, ``depth`` :class:`BasicTransformerBlock` s over the ``H·W`` positions, a
  zero-initialised 1×1 ``proj_out``, residual. LDM eq. 3: ``Attention(Q, K, V) = softmax(QKᵀ/√d)·V`` with
  ``Q = W_Q φ(z_t)``, ``K = W_K τ_θ(y)``, ``V = W_V τ_θ(y)``.
* :class:`BasicTransformerBlock`: pre-LayerNorm self-attention, cross-attention (self-attention again when
  no context is given, as CompVis), and a GEGLU feed-forward (Shazeer 2020, eq. 6 "GEGLU"; inner width 4·d).
* :class:`LDMUNet`: :class:`~diffzoo.networks.unet.UNet` whose attention blocks (levels in
  ``attention_resolutions`` and the middle) are SpatialTransformers with ``context_dim``-wide keys /
  values; class conditioning as LDM's ``ClassEmbedder`` — the label as a one-token context
  ``[B, 1, context_dim]`` (``cin-ldm-vq-f8.yaml``), plus a learned null class for classifier-free guidance.

Parameter layouts follow CompVis (``to_q`` / ``to_k`` / ``to_v`` without bias, ``to_out`` with), so the
paper configs count exactly what the official ``UNetModel(use_spatial_transformer=True)`` counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .attention import AttentionBlock, _norm
from .embeddings import sinusoidal_embedding
from .unet import UNet

__all__ = ["GEGLU", "CrossAttention", "BasicTransformerBlock", "SpatialTransformer", "LDMUNet"]


class GEGLU(nn.Module):
    """``(x W + b) ⊙ GELU(x V + c)`` with both projections in one ``Linear(d, 2·inner)`` (Shazeer 2020,
    eq. 6; CompVis ``GEGLU``). ``[…, d] → […, inner]``."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class CrossAttention(nn.Module):
    """Multi-head attention of ``x [B, N, d]`` to ``context [B, L, d_ctx]`` (``x`` itself when None):
    ``softmax(QKᵀ/√d_head)V`` (LDM eq. 3; Vaswani et al. 2017 eq. 1), ``context_mask [B, L]`` True on
    attended keys. ``[B, N, d] → [B, N, d]``."""

    def __init__(self, dim: int, heads: int, d_head: int, context_dim: int | None = None):
        super().__init__()
        inner, ctx = heads * d_head, context_dim or dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(ctx, inner, bias=False)
        self.to_v = nn.Linear(ctx, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, _ = x.shape
        if context is None:
            context, context_mask = x, None
        L = context.shape[1]

        def heads(t: torch.Tensor, n: int) -> torch.Tensor:
            return t.view(B, n, self.heads, -1).transpose(1, 2)

        q, k, v = heads(self.to_q(x), N), heads(self.to_k(context), L), heads(self.to_v(context), L)
        mask = None if context_mask is None else context_mask.bool().to(x.device)[:, None, None, :]
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(h.transpose(1, 2).reshape(B, N, -1))


class BasicTransformerBlock(nn.Module):
    """``x += attn1(LN(x))``; ``x += attn2(LN(x), context)``; ``x += FF(LN(x))`` with a GEGLU feed-forward
    ``Linear(4d → d) ∘ GEGLU(d → 4d)`` (CompVis ``BasicTransformerBlock``, ``gated_ff=True``). ``[B, N, d]`` → same."""

    def __init__(self, dim: int, heads: int, d_head: int, context_dim: int | None):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, d_head)
        self.ff = nn.Sequential(GEGLU(dim, 4 * dim), nn.Linear(4 * dim, dim))
        self.attn2 = CrossAttention(dim, heads, d_head, context_dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context, context_mask)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the positions of a feature map, conditioned by cross-attention (module docstring).

    Shapes: ``x`` ``[B, C, H, W]``, ``context`` ``[B, L, context_dim]``, ``context_mask`` ``[B, L]`` → ``[B, C, H, W]``.
    """

    takes_context = True

    def __init__(self, channels: int, heads: int, d_head: int, depth: int = 1, context_dim: int | None = None,
                 num_groups: int = 32):
        super().__init__()
        inner = heads * d_head
        self.norm = _norm(channels, num_groups)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(BasicTransformerBlock(inner, heads, d_head, context_dim) for _ in range(depth))
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)  # CompVis zero_module(proj_out): a new block is the identity
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x))
        h = h.reshape(B, h.shape[1], H * W).transpose(1, 2)  # [B, H·W, inner]
        for block in self.transformer_blocks:
            h = block(h, context, context_mask)
        h = h.transpose(1, 2).reshape(B, -1, H, W)
        return x + self.proj_out(h)


class LDMUNet(UNet):
    """The LDM U-Net with SpatialTransformers (CompVis ``UNetModel(use_spatial_transformer=True)``).

    Args:
        context_dim: width of the context tokens (txt2img: 1280 from its text Transformer; cin: 512 from
            the ClassEmbedder).
        transformer_depth: BasicTransformerBlocks per SpatialTransformer (LDM: 1).
        num_classes: if set, labels ``y`` become a one-token context through an embedding of
            ``num_classes + 1`` rows (LDM ``ClassEmbedder``; row ``num_classes`` is the learned null
            class of classifier-free guidance). Not the time-embedding class path of :class:`UNet`.
        **kwargs: the :class:`UNet` arguments; ``num_heads`` / ``num_head_channels`` set the transformers'
            heads (``d_head = channels / heads``, as CompVis for both ``legacy`` settings used by LDM's configs).

    ``forward(x, t, y=None, context=None, context_mask=None, pooled=None)``: ``pooled`` is accepted and
    ignored (LDM has no pooled text vector).
    """

    def __init__(self, *, context_dim: int, transformer_depth: int = 1, num_classes: int | None = None, **kwargs):
        for key in ("text_dim", "text_conditioning", "cross_attention_resolutions", "text_encoder_dim"):
            if kwargs.get(key) not in (None, (), [], "glide"):
                raise ConfigError(f"net.{key} is a UNet text option; LDMUNet conditions through net.context_dim")
            kwargs.pop(key, None)
        if int(context_dim) < 1 or int(transformer_depth) < 1:
            raise ConfigError(f"net.context_dim and net.transformer_depth must be >= 1, got {context_dim}, {transformer_depth}")
        super().__init__(num_classes=None, **kwargs)
        groups = kwargs.get("num_groups", 32)
        for stage in [*self.down, self.mid, *self.up]:
            for i, layer in enumerate(stage):
                if type(layer) is AttentionBlock:
                    ch, heads = layer.norm.num_channels, layer.num_heads
                    stage[i] = SpatialTransformer(ch, heads, ch // heads, int(transformer_depth), int(context_dim), groups)
        self.num_classes, self.context_dim = num_classes, int(context_dim)
        self.class_embedder = nn.Embedding(num_classes + 1, context_dim) if num_classes else None
        # a text-conditional module reads these: the context width its encoder must emit
        self.text_dim = self.text_encoder_dim = None if num_classes else self.context_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None, added_emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, in_channels, H, W]``, ``t`` ``[B]``; ``y`` int64 ``[B]`` (class-conditional) or
        ``context`` ``[B, L, context_dim]`` with optional ``context_mask`` ``[B, L]`` → ``[B, out_channels, H, W]``."""
        if self.class_embedder is not None:
            if context is not None:
                raise ValueError("LDMUNet: a class-conditional net takes y, not a context")
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            if y.shape != (x.shape[0],):
                raise ValueError(f"LDMUNet: y must have shape [{x.shape[0]}], got {tuple(y.shape)}")
            context = self.class_embedder(y)[:, None]  # ClassEmbedder: batch[key][:, None] → [B, 1, d]
        elif y is not None:
            raise ValueError("LDMUNet: got class labels y but the network was built with num_classes=None")
        t = self._check_inputs(x, t, None)
        with torch.autocast(x.device.type, enabled=False):  # the time embedding in float32, as UNet
            param_dtype = self.time_mlp[0].weight.dtype
            emb = self.time_mlp(sinusoidal_embedding(t.to(param_dtype), self.base_channels).to(param_dtype))
            if added_emb is not None:
                emb = emb + added_emb.to(param_dtype)
        emb = emb.to(x.dtype)
        ctx = (context.to(x.dtype) if context is not None else None, context_mask)
        h = self.input_conv(x)
        skips = [h]
        for stage in self.down:
            h = self._run(stage, h, emb, *ctx)
            skips.append(h)
        h = self._run(self.mid, h, emb, *ctx)
        for stage in self.up:
            h = self._run(stage, torch.cat([h, skips.pop()], dim=1), emb, *ctx)
        return self.out(h)

