"""A preview of captioned images: a PNG grid with each image's caption under it (matplotlib)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["save_caption_grid", "save_prompt_rows"]


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
        _show(ax, pix[i])
        ax.set_title("\n".join(textwrap.wrap(captions[i] or '""', wrap)), fontsize=7)
    return _save(fig, path)


def _show(ax, img) -> None:
    """One image ``[H, W, C]`` in [0, 1] (C = 1: grey), nearest-neighbour, so the pixels show as they are."""
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_prompt_rows(images: torch.Tensor, prompts: Sequence[str], path, per_row: int = 8, wrap: int = 40) -> Path:
    """Write samples of several prompts as a PNG grid: one row per prompt, labelled with it on the left.

    ``images`` ``[N, C, H, W]`` in ``[-1, 1]`` with sample ``i`` drawn for ``prompts[i mod P]`` (the
    order ``diffzoo-sample prompts=[…]`` draws them in); the first ``per_row`` samples of each prompt
    are shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = len(prompts)
    if P == 0:
        raise ValueError("save_prompt_rows: no prompts")
    cols = max(1, min(per_row, math.ceil(len(images) / P)))
    pix = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(P, cols + 1, figsize=(1.2 * cols + 2.4, 1.25 * P), dpi=100, squeeze=False,
                             gridspec_kw={"width_ratios": [2.0] + [1.0] * cols})
    for r, prompt in enumerate(prompts):
        label = axes[r, 0]
        label.axis("off")
        label.text(1.0, 0.5, "\n".join(textwrap.wrap(prompt or '"" (unconditional)', wrap)), ha="right", va="center",
                   fontsize=7, transform=label.transAxes)
        for c in range(cols):
            ax, i = axes[r, c + 1], r + c * P
            ax.axis("off")
            if i < len(pix):
                _show(ax, pix[i])
    return _save(fig, path)
