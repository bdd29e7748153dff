"""The data a metric compares against: which data set a config names (its identity, for cache
keys) and a split of it as the bytes a PNG would hold."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, NamedTuple

import torch
from torch.utils.data import DataLoader

from ..data.base import collate_batch
from ..utils.images import to_uint8

__all__ = ["SPLITS", "data_identity", "stable_hash", "dataset_name", "instantiate_datamodule", "build_datamodule", "SplitData", "load_split"]

SPLITS = ("train", "val")  # the data modules' two splits (val = the held-out / test split)

# Keys of a data config that change how data is read, not which data it is.
_LOADER_KEYS = frozenset({"batch_size", "eval_batch_size", "num_workers", "pin_memory", "persistent_workers", "seed", "root", "download", "system_dir"})


def data_identity(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a ``data`` config that decides the images: its ``_target_``, size, split
    options… — without loader settings or folders (the same data read from elsewhere is the same)."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(data_cfg, resolve=True) if OmegaConf.is_config(data_cfg) else dict(data_cfg)
    plain = json.loads(json.dumps(raw, default=str))
    return {k: v for k, v in sorted(plain.items()) if k not in _LOADER_KEYS}


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hex SHA-256 prefix of ``obj`` as canonical JSON (the same on every machine)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def _instantiate(data_cfg: Mapping[str, Any]):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(data_cfg if OmegaConf.is_config(data_cfg) else OmegaConf.create(dict(data_cfg)))


def instantiate_datamodule(data_cfg: Mapping[str, Any]):
    """The data module of ``data_cfg``, not yet set up (construction reads no files): its
    ``name``, ``data_shape`` and ``num_classes`` are known; splits load on first use."""
    return _instantiate(data_cfg)


def dataset_name(data_cfg: Mapping[str, Any]) -> str:
    """The data module's ``name`` (``"digits"``, …) without loading data."""
    return _instantiate(data_cfg).name


def build_datamodule(data_cfg: Mapping[str, Any]):
    """Instantiate a data module from its config (a dict or ``DictConfig``) and load its splits."""
    dm = _instantiate(data_cfg)
    dm.setup("fit")
    return dm


class SplitData(NamedTuple):
    """A split as evaluation sees it: ``x`` uint8 ``[N, C, H, W]`` (images, quantised once with
    :func:`~diffzoo.utils.images.to_uint8`) or float32 ``[N, D]`` (toy points); ``y`` int64 ``[N]`` or ``None``."""

    x: torch.Tensor
    y: torch.Tensor | None


def load_split(datamodule, split: str, n: int | None = None) -> SplitData:
    """The first ``n`` items (all when ``None``) of split ``"train"`` or ``"val"``, in the data
    module's order, images quantised to uint8."""
    if split not in SPLITS:
        raise ValueError(f"reference split {split!r} is not one of {list(SPLITS)}")
    datamodule.setup("fit")
    dataset = datamodule.train_set if split == "train" else datamodule.val_set
    if dataset is None or len(dataset) == 0:
        raise ValueError(f"{datamodule.name}: the {split!r} split is empty; choose another split")
    if n is not None and not 1 <= n <= len(dataset):
        raise ValueError(f"{datamodule.name}: asked for {n} {split!r} items but the split has {len(dataset)}")
    count = len(dataset) if n is None else n
    loader = DataLoader(torch.utils.data.Subset(dataset, range(count)), batch_size=1024, shuffle=False, collate_fn=collate_batch)
    xs, ys = [], []
    for batch in loader:
        xs.append(batch["x"])
        if "y" in batch:
            ys.append(batch["y"])
    x = torch.cat(xs)
    x = to_uint8(x) if x.ndim == 4 else x.float()
    return SplitData(x, torch.cat(ys).long() if ys else None)
