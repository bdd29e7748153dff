"""Reference statistics: the features of real data that generated samples are compared with.

They are computed once per (data identity, split, extractor identity, resize mode, N) and cached
as ``<cache_dir>/reference/<dataset>-<split>-<key>.pt``. Each file also holds a *content hash*
of its features; that hash is logged next to every FID / KID, so two numbers can be checked to
use the very same reference — the usual source of FIDs that cannot be compared.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .data import build_datamodule, data_identity, dataset_name, load_split, stable_hash
from .features import FeatureExtractor, extract_features
from .fid import FeatureStats, feature_statistics

__all__ = ["ReferenceStats", "reference_key", "reference_statistics", "content_hash"]


@dataclass(frozen=True)
class ReferenceStats:
    """Reference features ``[N, d]`` (float32, for KID / torchmetrics) and their statistics.

    Attributes:
        key: hash of what they were computed from (cache file name); ``content_hash``: hash of
            the features themselves (what is logged); ``split``, ``n``, ``resize``, ``extractor``: the setup.
    """

    features: torch.Tensor
    stats: FeatureStats
    key: str
    content_hash: str
    split: str
    n: int
    resize: str
    extractor: str

    def describe(self) -> dict[str, Any]:
        """The identity logged with every metric: ``{"split", "n", "hash", "resize", "extractor"}``."""
        return {"split": self.split, "n": self.n, "hash": self.content_hash, "resize": self.resize, "extractor": self.extractor}


def content_hash(features: torch.Tensor) -> str:
    """SHA-256 prefix (16 hex) of the float32 feature bytes."""
    return hashlib.sha256(features.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


def reference_key(data_cfg: Mapping[str, Any], split: str, extractor: FeatureExtractor, n: int | None) -> str:
    """Cache key of one reference set: hash of (data identity, split, extractor, resize, N)."""
    return stable_hash({"data": data_identity(data_cfg), "split": split, "extractor": extractor.identity,
                        "resize": extractor.resize, "n": "all" if n is None else int(n)}, length=16)


def reference_statistics(
    extractor: FeatureExtractor,
    data_cfg: Mapping[str, Any],
    cache_dir,
    split: str = "train",
    n: int | None = None,
    datamodule=None,
    batch_size: int = 256,
) -> ReferenceStats:
    """Load or compute the reference statistics of the first ``n`` (all: ``None``) images of
    ``split`` of the data named by ``data_cfg``, in ``extractor``'s feature space.

    ``datamodule``: an already set-up data module for ``data_cfg`` (else one is built). Call
    under :func:`~diffzoo.metrics.distributed.rank_zero_first` when processes share the cache.
    """
    dm = datamodule
    name = dm.name if dm is not None else dataset_name(data_cfg)
    key = reference_key(data_cfg, split, extractor, n)
    path = Path(cache_dir) / "reference" / f"{name}-{split}-{key}.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        features = saved["features"]
        if content_hash(features) != saved["content_hash"]:
            raise ValueError(f"reference statistics {path} are corrupt (content hash mismatch); delete the file to recompute")
    else:
        if dm is None:
            dm = build_datamodule(data_cfg)
        images = load_split(dm, split, n).x
        features = extract_features(extractor, images, batch_size).features.float()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"features": features, "content_hash": content_hash(features), "key": key, "split": split,
                    "extractor": extractor.identity, "resize": extractor.resize}, tmp)
        os.replace(tmp, path)
    return ReferenceStats(
        features=features, stats=feature_statistics(features), key=key, content_hash=content_hash(features),
        split=split, n=int(features.shape[0]), resize=extractor.resize, extractor=extractor.identity,
    )
