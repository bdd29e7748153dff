"""Target labels for class-conditional / guided sampling, and the class grid (one row per class).

Sample ``i``'s label depends only on ``i`` and the ``y`` option (never on the batch size), like its
noise: ``y=None`` cycles through the classes (``y_i = i mod K``), an int fixes one class, a list
cycles through its classes.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["labels_for_indices", "num_classes_of", "class_grid"]


def num_classes_of(*nets: nn.Module | None) -> int | None:
    """The number of (real) classes of the first network that has ``num_classes`` set, else ``None``."""
    for net in nets:
        k = getattr(net, "num_classes", None)
        if k:
            return int(k)
    return None


def labels_for_indices(indices: Sequence[int], y: Any, num_classes: int | None) -> torch.Tensor:
    """int64 ``[len(indices)]`` labels of the global sample ``indices`` for the option ``y``
    (``None`` | int | list of ints), checked against ``num_classes``."""
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    if y is None:
        if not num_classes:
            raise ValueError("y=null cycles through the classes, but neither the model nor the guidance knows "
                             "how many there are; set y=<class>")
        return idx % int(num_classes)
    values = [y] if isinstance(y, (int, str)) or torch.is_tensor(y) and y.ndim == 0 else list(y)
    classes = torch.as_tensor([int(c) for c in values], dtype=torch.long)
    if classes.numel() == 0:
        raise ValueError("y=[] names no class")
    if num_classes and (bool((classes < 0).any()) or bool((classes >= num_classes).any())):
        raise ValueError(f"y={classes.tolist()}: classes must lie in [0, {num_classes - 1}]")
    return classes[idx % classes.numel()]


def class_grid(x: torch.Tensor, y: torch.Tensor, num_classes: int, blank: float = 1.0) -> tuple[torch.Tensor, int]:
    """Arrange images ``x`` ``[N, C, H, W]`` with labels ``y`` ``[N]`` one row per class present
    (in class order, samples in index order, short rows padded with ``blank``) → ``(cells, per_row)``
    for :func:`diffzoo.utils.images.save_image_grid` (``nrow=per_row``)."""
    present = sorted(set(int(c) for c in y.tolist()))
    rows = [x[y == c] for c in present]
    per_row = max(1, max(len(r) for r in rows))
    cells = torch.full((len(present) * per_row, *x.shape[1:]), blank, dtype=x.dtype)
    for i, r in enumerate(rows):
        cells[i * per_row: i * per_row + len(r)] = r
    return cells, per_row
