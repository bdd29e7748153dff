"""A noise-conditional MLP for low-dimensional (toy) data, ``f(x, t, y)`` with ``x`` ``[B, D]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import sinusoidal_embedding

__all__ = ["TimeMLP"]


class TimeMLP(nn.Module):
    """SiLU MLP whose every hidden layer is shifted by a projection of the noise-level embedding.

    ``e = Linear(SiLU(Linear(sinusoidal(t))))`` (+ a class embedding), then
    ``h_0 = Linear(x)``, ``h_{l+1} = Linear_l(SiLU(h_l)) + W_l·SiLU(e)`` for ``l < depth``,
    and ``out = Linear(SiLU(h_depth))`` — DDPM's U-Net adds a projection of the ``t``
    embedding inside every residual block (Ho et al. 2020, code); this does the same per layer.

    Args:
        dim: data dimension ``D``.
        hidden: width of the hidden layers.
        depth: number of hidden ``Linear`` layers after the input layer.
        time_embed_dim: width of the sinusoidal embedding of ``t``.
        out_dim: output width (default ``dim``; ``2·dim`` for a learned variance).
        num_classes: if set, labels ``0 … num_classes − 1`` plus the learned null class
            ``num_classes`` (classifier-free guidance); ``y=None`` means null.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 256,
        depth: int = 3,
        time_embed_dim: int = 128,
        out_dim: int | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        sizes = {"dim": dim, "hidden": hidden, "depth": depth, "time_embed_dim": time_embed_dim}
        for name, value in sizes.items():
            if int(value) != value or value < 1:
                raise ValueError(f"TimeMLP: {name} must be a positive integer, got {value!r}")
        if time_embed_dim < 4:
            raise ValueError(f"TimeMLP: time_embed_dim must be >= 4, got {time_embed_dim}")
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
            raise ValueError(f"TimeMLP: num_classes must be a positive integer or null, got {num_classes!r}")
        self.dim, self.out_dim = dim, out_dim or dim
        self.in_channels, self.out_channels = self.dim, self.out_dim  # the contract shared with UNet
        self.time_embed_dim, self.depth, self.num_classes = time_embed_dim, depth, num_classes

        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.class_embed = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.emb_proj = nn.Linear(hidden, depth * hidden)  # one shift per hidden layer
        self.input = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.output = nn.Linear(hidden, self.out_dim)

    @property
    def null_class(self) -> int | None:
        """The label index meaning "no class" (classifier-free guidance), or None."""
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, dim]``, ``t`` float ``[B]`` (or a scalar), ``y`` int64 ``[B]`` → ``[B, out_dim]``."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"TimeMLP: x must have shape [B, {self.dim}], got {tuple(x.shape)}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"TimeMLP: t must have shape [{x.shape[0]}], got {tuple(t.shape)}")
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_embed_dim).to(x.dtype))
        if self.class_embed is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_embed(y)
        elif y is not None:
            raise ValueError("TimeMLP: got class labels y but the network was built with num_classes=None")

        shifts = self.emb_proj(F.silu(emb)).chunk(self.depth, dim=1)
        h = self.input(x)
        for layer, shift in zip(self.layers, shifts):
            h = layer(F.silu(h)) + shift
        return self.output(F.silu(h))
