"""Turning tensors into pictures: uint8 quantisation, PNG sample grids, 2-D scatter plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["to_uint8", "save_image_grid", "save_scatter", "save_samples_figure"]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Quantise images in [-1, 1] to the bytes a PNG would hold: ``round((x + 1)·127.5)``,
    clamped to [0, 255]. Shape ``[B, C, H, W]`` float → ``[B, C, H, W]`` uint8 (CPU)."""
    return ((x.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def save_image_grid(x: torch.Tensor, path, nrow: int | None = None, upscale: int | None = None) -> Path:
    """Write images ``[B, C, H, W]`` in [-1, 1] as one PNG grid (``nrow`` images per row,
    default ≈√B). Small images are upscaled (nearest) so that a cell is at least 64 px."""
    from PIL import Image

    u8 = to_uint8(x)
    B, C, H, W = u8.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(B))))
    ncol = int(math.ceil(B / nrow))
    pad = 1
    grid = np.full((C, ncol * (H + pad) + pad, nrow * (W + pad) + pad), 255, dtype=np.uint8)
    for i in range(B):
        r, c = divmod(i, nrow)
        grid[:, pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = u8[i].numpy()
    img = Image.fromarray(grid[0] if C == 1 else grid.transpose(1, 2, 0)[..., :3])
    upscale = upscale or max(1, 64 // max(H, W))
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_scatter(x: torch.Tensor, path, reference: torch.Tensor | None = None, title: str = "") -> Path:
    """Scatter plot of 2-D samples ``[B, 2]`` (optionally over reference data ``[N, 2]``) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        r = reference.detach().float().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, alpha=0.3, c="gray", label="data")
    s = x.detach().float().cpu().numpy()
    ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.6, c="C0", label="samples")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_samples_figure(x: torch.Tensor, path, reference: torch.Tensor | None = None, title: str = "") -> Path:
    """Images ``[B, C, H, W]`` → PNG grid; 2-D points ``[B, 2]`` → scatter plot."""
    if x.ndim == 4:
        return save_image_grid(x, path)
    if x.ndim == 2 and x.shape[1] == 2:
        return save_scatter(x, path, reference, title)
    raise ValueError(f"cannot draw samples of shape {tuple(x.shape)}: need [B,C,H,W] or [B,2]")
