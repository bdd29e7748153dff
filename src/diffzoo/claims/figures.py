"""The report's figures: rows of images, scatter panels, and the one way a figure is opened and saved."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

__all__ = ["figure", "image_rows", "scatter_panels"]


@contextlib.contextmanager
def figure(path: Path, *args, title: str = "", **kwargs):
    """``with figure(path, rows, cols, figsize=…) as (fig, axes): …`` — a matplotlib figure (Agg, no
    display) that is titled, laid out, written to ``path`` and closed when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kwargs.setdefault("dpi", 100)
    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def image_rows(images: dict[str, torch.Tensor], path: Path, title: str, per_row: int = 16) -> Path:
    """One row of the first ``per_row`` images ``[n, C, H, W]`` (C = 1 or 3) in [−1, 1] per entry of ``images``,
    labelled on the left, as a PNG."""
    with figure(path, len(images), 1, figsize=(per_row * 0.5 + 1.5, 0.75 * len(images) + 0.6), squeeze=False,
                title=title) as (_, axes):
        for ax, (name, x) in zip(axes[:, 0], images.items()):
            x = x[:per_row].clamp(-1, 1).cpu()
            row = torch.cat([torch.nn.functional.pad(img, (1, 1, 1, 1), value=-1) for img in x], dim=2)  # [C, H, W·n]
            if row.shape[0] == 3:
                ax.imshow(((row.permute(1, 2, 0) + 1) / 2).numpy())
            else:
                ax.imshow(row[0].numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_yticks([])
            ax.set_xticks([])
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return path


def scatter_panels(sets: dict[str, torch.Tensor], path: Path, title: str, lim: float | None = None) -> Path:
    """One scatter plot of 2-D points ``[n, 2]`` per entry of ``sets``, side by side, as a PNG."""
    with figure(path, 1, len(sets), figsize=(3.6 * len(sets), 3.6), dpi=90, squeeze=False, title=title) as (_, axes):
        for ax, (name, x) in zip(axes[0], sets.items()):
            x = x.detach().float().cpu().numpy()
            ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
            ax.set_title(name, fontsize=9)
            ax.set_aspect("equal")
            if lim is not None:
                ax.set_xlim(-lim, lim)
                ax.set_ylim(-lim, lim)
    return path
