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


def save_prompt_rows(images: torch.Tensor, prompts: Sequence[str], path, per_row: int = 8, wrap: int = 40,
                     lead: torch.Tensor | None = None, lead_title: str = "source", title: str | None = None) -> Path:
    """Write samples of several prompts as a PNG grid: one row per prompt, labelled with it on the left.

    ``images`` ``[N, C, H, W]`` in ``[-1, 1]`` with sample ``i`` drawn for ``prompts[i mod P]`` (the
    order ``diffzoo-sample prompts=[…]`` draws them in); the first ``per_row`` samples of each prompt
    are shown. ``lead`` ``[P, C, H, W]`` (optional): one image per row shown before its samples, in a
    column headed ``lead_title`` (unCLIP's variations: the source image, then its variations);
    ``title``: a line above the grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = len(prompts)
    if P == 0:
        raise ValueError("save_prompt_rows: no prompts")
    if lead is not None and len(lead) != P:
        raise ValueError(f"save_prompt_rows: {P} rows but {len(lead)} lead images")
    cols = max(1, min(per_row, math.ceil(len(images) / P)))
    first = 1 if lead is None else 2  # the label column, then the lead column if any
    pix = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    lead_pix = None if lead is None else ((lead.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(P, cols + first, figsize=(1.2 * (cols + first - 1) + 2.4, 1.25 * P + (0.3 if title else 0)),
                             dpi=100, squeeze=False, gridspec_kw={"width_ratios": [2.0] + [1.0] * (cols + first - 1)})
    for r, prompt in enumerate(prompts):
        label = axes[r, 0]
        label.axis("off")
        label.text(1.0, 0.5, "\n".join(textwrap.wrap(prompt or '"" (unconditional)', wrap)), ha="right", va="center",
                   fontsize=7, transform=label.transAxes)
        if lead_pix is not None:
            axes[r, 1].axis("off")
            _show(axes[r, 1], lead_pix[r])
            if r == 0:
                axes[r, 1].set_title(lead_title, fontsize=7)
        for c in range(cols):
            ax, i = axes[r, c + first], r + c * P
            ax.axis("off")
            if i < len(pix):
                _show(ax, pix[i])
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, path)
