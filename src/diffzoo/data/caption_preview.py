"""A preview of captioned images: a PNG grid with each image's caption under it (matplotlib)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["save_caption_grid"]


def save_caption_grid(images: torch.Tensor, captions: Sequence[str], path, ncol: int | None = None, wrap: int = 22) -> Path:
    """Write images ``[B, C, H, W]`` in ``[-1, 1]`` (C = 1 or 3) as a PNG grid of ``ncol``
    columns (default ≈√B), each with its caption (wrapped at ``wrap`` characters) below it.
    Nearest-neighbour display, so the pixels are shown as they are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(captions) != len(images):
        raise ValueError(f"save_caption_grid: {len(images)} images but {len(captions)} captions")
    B = len(images)
    ncol = ncol or max(1, math.ceil(math.sqrt(B)))
    nrow = max(1, math.ceil(B / ncol))
    pix = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol, 2.0 * nrow), dpi=100, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= B:
            continue
        img = pix[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("\n".join(textwrap.wrap(captions[i] or '""', wrap)), fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
