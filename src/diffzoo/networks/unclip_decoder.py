"""unCLIP's decoder network (Ramesh et al. 2022, §2.1): GLIDE's text-conditional U-Net conditioned
on a CLIP image embedding ``z_i`` as well.

§2.1: "we modify the architecture described in Nichol et al. (2021) by projecting and adding CLIP
embeddings to the existing timestep embedding, and by projecting CLIP embeddings into four extra
tokens of context that are concatenated to the sequence of outputs from the GLIDE text encoder."

:class:`UnCLIPDecoderNet` wraps a :class:`~diffzoo.networks.unet.UNet` built with ``text_dim`` and
GLIDE conditioning:

* ``added_emb = W_t z_i + b_t`` ``[B, 4·base_channels]`` goes to ``UNet(added_emb=…)``;
* ``W_c z_i + b_c`` ``[B, K·text_dim]`` becomes ``K = 4`` context tokens placed before the text
  tokens (attention over the context is order-free; diffusers / Karlo put them first, with the
  same ``[text_dim, K]`` reshape of the projection used here);
* a dropped embedding (classifier-free guidance) is replaced by a **learned** vector (§2.1: "setting
  the CLIP embeddings to zero (or a learned embedding)"; Karlo's ``cf_param``, diffusers'
  ``learned_classifier_free_guidance_embeddings``). A row of ``clip_emb`` that is NaN means
  "dropped" (:data:`DROPPED`), so the denoisers' classifier-free guidance, which fills the null
  half of its batch with a scalar, reaches the learned vector.

Parameter names follow diffusers' ``UnCLIPTextProjModel`` where the layouts match (the image
embedding's two projections and the learned null embedding). Karlo's decoder also adds a projection
of the CLIP *text* embedding to the time embedding and projects + LayerNorms CLIP's text states: it
uses CLIP's text encoder in place of GLIDE's; here GLIDE's jointly trained encoder feeds the U-Net
as in the paper (its pooled vector is added by the U-Net's own ``text_pool_proj``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["DROPPED", "UnCLIPDecoderNet"]

DROPPED = float("nan")  # a clip_emb row of NaN: the embedding is dropped (the learned null is used)


class UnCLIPDecoderNet(nn.Module):
    """The decoder's network (see the module docstring).

    Args:
        unet: a :class:`~diffzoo.networks.unet.UNet` with ``text_dim`` set and GLIDE conditioning.
        clip_dim: ``e``, the CLIP embedding width.
        num_clip_tokens: extra context tokens (4 in §2.1).

    ``net(x, t, context=None, context_mask=None, pooled=None, clip_emb=None) → ε̂`` for ``x [B, C, H, W]``,
    text inputs as :meth:`UNet.forward`, ``clip_emb [B, e]`` (NaN rows / None = dropped).
    """

    def __init__(self, unet: nn.Module, clip_dim: int, num_clip_tokens: int = 4):
        super().__init__()
        if getattr(unet, "text_dim", None) is None or getattr(unet, "text_conditioning", None) != "glide":
            raise ConfigError("net.unet must be a text-conditional U-Net with GLIDE conditioning: set net.unet.text_dim "
                              "and net.unet.text_conditioning=glide")
        if int(clip_dim) < 1 or int(num_clip_tokens) < 1:
            raise ConfigError(f"net.clip_dim and net.num_clip_tokens must be >= 1, got {clip_dim}, {num_clip_tokens}")
        self.unet = unet
        self.clip_dim, self.num_clip_tokens = int(clip_dim), int(num_clip_tokens)
        self.text_dim = unet.text_dim
        self.in_channels, self.out_channels, self.image_size = unet.in_channels, unet.out_channels, unet.image_size
        self.null_class = None
        # §2.1 "projecting and adding CLIP embeddings to the existing timestep embedding"
        self.clip_image_embeddings_project_to_time_embeddings = nn.Linear(self.clip_dim, unet.embedding_dim)
        # §2.1 "projecting CLIP embeddings into four extra tokens of context"
        self.clip_extra_context_tokens_proj = nn.Linear(self.clip_dim, self.num_clip_tokens * self.text_dim)
        # §2.1 "(or a learned embedding)": what a dropped embedding becomes
        self.learned_classifier_free_guidance_embeddings = nn.Parameter(torch.zeros(self.clip_dim))

    def embedding_or_null(self, clip_emb: torch.Tensor | None, batch: int, dtype, device) -> torch.Tensor:
        """``clip_emb [B, e]`` with NaN rows (and None: every row) replaced by the learned null."""
        null = self.learned_classifier_free_guidance_embeddings.to(dtype)
        if clip_emb is None:
            return null.expand(batch, -1)
        if clip_emb.shape != (batch, self.clip_dim):
            raise ValueError(f"UnCLIPDecoderNet: clip_emb must be [{batch}, {self.clip_dim}], got {tuple(clip_emb.shape)}")
        dropped = torch.isnan(clip_emb).any(-1, keepdim=True)
        return torch.where(dropped, null, torch.nan_to_num(clip_emb.to(dtype)))

    def clip_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, e]`` → the ``[B, K, text_dim]`` extra context tokens (the ``[text_dim, K]`` reshape of
        diffusers' ``UnCLIPTextProjModel``: token ``j``, channel ``c`` is output ``c·K + j``)."""
        return self.clip_extra_context_tokens_proj(z).view(z.shape[0], self.text_dim, self.num_clip_tokens).transpose(1, 2)

    def forward(self, x: torch.Tensor, t, context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None, clip_emb: torch.Tensor | None = None) -> torch.Tensor:
        """See the class docstring; returns the U-Net's output ``[B, out_channels, H, W]``."""
        B = x.shape[0]
        z = self.embedding_or_null(clip_emb, B, x.dtype, x.device)
        tokens = self.clip_tokens(z)
        if context is not None:
            context = torch.cat([tokens, context.to(tokens.dtype)], dim=1)
            if context_mask is not None:
                context_mask = torch.cat([torch.ones(B, self.num_clip_tokens, dtype=torch.bool, device=x.device),
                                          context_mask.bool()], dim=1)
        else:
            context, context_mask = tokens, None
        added = self.clip_image_embeddings_project_to_time_embeddings(z)
        return self.unet(x, t, context=context, context_mask=context_mask, pooled=pooled, added_emb=added)
