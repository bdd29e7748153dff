"""Vector quantisation of a latent grid (van den Oord et al. 2017, "Neural Discrete Representation
Learning", §3.1–3.2), as the VQ first stages of latent diffusion use it (taming-transformers'
``VectorQuantizer2``, which CompVis/latent-diffusion's ``VQModel`` imports).

Each latent vector ``z_e`` is replaced by its nearest codebook entry ``e_k``
(VQ-VAE eq. 1–2, ``k = argmin_j ‖z_e − e_j‖²``); gradients pass the quantiser unchanged (the
straight-through estimator, VQ-VAE §3.2: ``z_q = z_e + sg[e_k − z_e]``). The loss that trains the
codebook and commits the encoder to it is VQ-VAE eq. 3 without its reconstruction term:

    paper form:  ‖sg[z_e] − e‖² + β ‖z_e − sg[e]‖²            (β = 0.25, VQ-VAE §4.1)

**Trap** (``loss_form``): taming's ``VectorQuantizer2`` defaults to ``legacy=True``, which puts β
on the *codebook* term instead, ``β ‖sg[z_e] − e‖² + ‖z_e − sg[e]‖²``; that is what the released
LDM VQ models were trained with, so it is the default here, and ``loss_form="paper"`` gives eq. 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["VectorQuantizer", "Quantized", "LOSS_FORMS", "codebook_perplexity"]

LOSS_FORMS = ("legacy", "paper")


@dataclass
class Quantized:
    """What :meth:`VectorQuantizer.forward` returns.

    Attributes:
        z_q: quantised latents ``[B, D, h, w]``, straight-through (their gradient is ``z``'s).
        loss: codebook + commitment loss (scalar).
        indices: chosen codes ``[B, h, w]`` (int64).
        perplexity: ``exp(H(p̂))`` of the batch's code frequencies ``p̂`` (scalar; 1 = one code used,
            ``n_embed`` = all used equally).
        usage: fraction of the codebook used at least once in the batch (scalar).
    """

    z_q: torch.Tensor
    loss: torch.Tensor
    indices: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


def codebook_perplexity(indices: torch.Tensor, n_embed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity ``exp(−Σ_k p̂_k log p̂_k)`` of the code frequencies in ``indices`` (any shape) and
    the fraction of the ``n_embed`` codes used → two scalars."""
    counts = torch.bincount(indices.reshape(-1), minlength=n_embed).float()
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-10))).sum()
    return entropy.exp(), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """A codebook of ``n_embed`` vectors of size ``embed_dim`` and nearest-neighbour quantisation.

    Args:
        n_embed: codebook size K (LDM vq-f4: 8192; vq-f8: 16384).
        embed_dim: D, the channels of the latents it quantises.
        beta: commitment weight β (0.25 in VQ-VAE §4.1 and in LDM's ``VQModel``).
        loss_form: ``"legacy"`` (taming's default, the released LDM models) or ``"paper"`` (VQ-VAE
            eq. 3); see the module docstring.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, loss_form: str = "legacy"):
        super().__init__()
        if loss_form not in LOSS_FORMS:
            raise ConfigError(f"net.loss_form={loss_form!r} is not one of {list(LOSS_FORMS)}")
        if n_embed < 1 or embed_dim < 1:
            raise ConfigError(f"net.n_embed and net.embed_dim must be >= 1, got {n_embed}, {embed_dim}")
        self.n_embed, self.embed_dim, self.beta, self.loss_form = int(n_embed), int(embed_dim), float(beta), loss_form
        self.embedding = nn.Embedding(self.n_embed, self.embed_dim)
        # taming's initialisation: U(−1/K, 1/K)
        self.embedding.weight.data.uniform_(-1.0 / self.n_embed, 1.0 / self.n_embed)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``[B, D, h, w]`` → indices ``[B, h, w]`` of the nearest codes (VQ-VAE eq. 1)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)
        e = self.embedding.weight
        # ‖z − e‖² = ‖z‖² + ‖e‖² − 2 zᵀe, as taming computes it
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2.0 * flat @ e.t()
        return d.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices ``[B, h, w]`` → code vectors ``[B, D, h, w]``."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantise ``z`` ``[B, D, h, w]`` → :class:`Quantized`."""
        if z.shape[1] != self.embed_dim:
            raise ValueError(f"the quantizer takes {self.embed_dim} channels, got {tuple(z.shape)}")
        indices = self.nearest(z)
        e = self.embed(indices)
        codebook = (e - z.detach()).pow(2).mean()   # ‖sg[z_e] − e‖²
        commit = (e.detach() - z).pow(2).mean()     # ‖z_e − sg[e]‖²
        if self.loss_form == "paper":               # VQ-VAE eq. 3
            loss = codebook + self.beta * commit
        else:                                       # taming VectorQuantizer2(legacy=True)
            loss = self.beta * codebook + commit
        z_q = z + (e - z).detach()                  # straight-through estimator (VQ-VAE §3.2)
        perplexity, usage = codebook_perplexity(indices, self.n_embed)
        return Quantized(z_q, loss, indices, perplexity, usage)
