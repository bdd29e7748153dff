"""One cascade stage's metrics at its own resolution: FID in the feature space of a classifier trained on
that stage's training data (the project's small-data feature space, :mod:`diffzoo.metrics.classifier`;
Inception for RGB images of at least 32 px, as everywhere else) and the Classification Accuracy Score
(Ravuri & Vinyals 2019; CDM §4.2) with its real-data baseline."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..metrics.cas import classification_accuracy_score
from ..metrics.data import build_datamodule, load_split
from ..metrics.features import extract_features, make_extractor
from ..metrics.fid import feature_statistics, frechet_distance
from ..metrics.naming import metric_name, sample_count_tag
from ..metrics.reference import reference_statistics
from ..utils.images import to_uint8

__all__ = ["stage_metrics"]


def stage_metrics(stage, x: torch.Tensor, labels: torch.Tensor | None, metrics: Sequence[str], cache_dir, *, seed: int = 0,
                  reference_split: str = "train", reference_n: int | None = None, cas_epochs: int = 10,
                  classifier_epochs: int | None = None) -> dict[str, Any]:
    """``{"fid_<space><n>": …, "cas<n>": …, "real_accuracy<n>": …, "reference": …}`` (e.g. ``fid_fashion_mnist_16px1k``) for the stage's samples
    ``x`` ``[n, C, H, W]`` (data coordinates) with ``labels`` ``[n]`` (``None``: CAS is skipped). The data is
    the one the stage was trained on (its checkpoint's config); ``classifier_epochs`` those of its feature
    classifier (``None``: the data set's default; part of the classifier's cache key)."""
    data_cfg = (stage.module.run_config or {}).get("data")
    if not data_cfg:
        return {"skipped": "the checkpoint stores no data config"}
    dm = build_datamodule(data_cfg)
    labelled = dm.num_classes is not None
    images = to_uint8(x.clamp(-1, 1))
    n, out = len(images), {}
    if "fid" in metrics:
        extractor = make_extractor("auto", data_cfg, tuple(dm.data_shape), labelled, cache_dir, seed=seed,
                                   epochs=classifier_epochs)
        ref = reference_statistics(extractor, data_cfg, cache_dir, reference_split, reference_n, datamodule=dm)
        feats = extract_features(extractor, images).features
        out[metric_name("fid", n, extractor.space)] = frechet_distance(feature_statistics(feats), ref.stats)
        out["reference"] = ref.describe()
    if "cas" in metrics and labelled and labels is not None:
        test, train = load_split(dm, "val"), load_split(dm, "train", n)
        res = classification_accuracy_score(images, labels.cpu(), test.x, test.y, int(dm.num_classes), train.x, train.y,
                                            epochs=cas_epochs, seed=seed)
        out[f"cas{sample_count_tag(n)}"], out[f"real_accuracy{sample_count_tag(n)}"] = res.cas, res.real_accuracy
        out["cas_setup"] = {"n_test": res.n_test, "epochs": res.epochs}
    return out
