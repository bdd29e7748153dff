"""Measurements with uncertainties for the claims: samples through the one sampling loop, and
sample quality in a data set's own feature space.

* FID (Heusel et al. 2017) against the training images, with a bootstrap standard error: the
  generated features are resampled with replacement ``B`` times and the s.d. of the ``B`` FIDs is
  reported (it measures the spread that comes from drawing ``n`` samples; FID's small-``n`` bias is
  the same for every cell of one claim because they share ``n``).
* Target accuracy of class-conditional samples (how often the feature classifier assigns a sample
  to its target class) with its binomial standard error ``√(p(1−p)/n)``.
* Inception Score in the same classifier's logits (Salimans et al. 2016), s.e. from its splits.
* Precision / recall (Kynkäänniemi et al. 2019) in the same features, binomial s.e.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .criteria import Measured

__all__ = ["draw", "SampleQuality", "binomial", "mean_se"]


def binomial(p: float, n: int) -> Measured:
    """A proportion ``p`` of ``n`` trials with its standard error ``√(p(1−p)/n)``."""
    return Measured(float(p), math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan"))


def mean_se(values) -> Measured:
    """The mean of ``values`` (a tensor ``[n]``, kept in its dtype, or a list of floats, read in float64) with its
    standard error ``s / √n`` (``s``: the unbiased standard deviation; 0 when ``n < 2``)."""
    t = values.flatten() if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float64)
    n = t.numel()
    return Measured(float(t.mean()), float(t.std() / math.sqrt(n)) if n > 1 else 0.0)


def draw(module, n: int, seed: int = 0, batch_size: int = 250, sampler=None, guidance=None, y=None) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """``n`` samples of ``module`` (EMA weights) through :func:`diffzoo.metrics.draw_samples`:
    images ``[n, C, H, W]`` in ``[−1, 1]``, their labels ``[n]`` (or ``None``) and the NFE per sample."""
    from ..metrics import draw_samples

    xs, ys, nfe = [], [], 0
    for batch in draw_samples(module, n, seed, batch_size, sampler=sampler, guidance=guidance, y=y):
        xs.append(batch.x.cpu())
        if batch.labels is not None:
            ys.append(batch.labels.cpu())
        nfe = batch.nfe
    return torch.cat(xs), (torch.cat(ys) if ys else None), nfe


@dataclass
class QualityReport:
    """Sample quality of one set of samples (every entry a :class:`Measured`)."""

    fid: Measured
    inception_score: Measured
    precision: Measured
    recall: Measured
    target_accuracy: Measured | None = None

    def as_dict(self, suffix: str = "") -> dict[str, Measured]:
        """``{"fid<suffix>": …, "is<suffix>": …, "precision<suffix>": …, "recall<suffix>": …[, "target_accuracy<suffix>"]}``."""
        out = {f"fid{suffix}": self.fid, f"is{suffix}": self.inception_score, f"precision{suffix}": self.precision,
               f"recall{suffix}": self.recall}
        if self.target_accuracy is not None:
            out[f"target_accuracy{suffix}"] = self.target_accuracy
        return out


class SampleQuality:
    """FID / IS / precision / recall / target accuracy of images against a data set's training split,
    in the features of the data set's own classifier (:func:`diffzoo.metrics.make_extractor`).

    Args:
        data_cfg: the ``data`` config of the model's run (``module.run_config["data"]``).
        data_shape: ``(C, H, W)``.
        cache_dir: where the feature classifier is cached.
        reference_n: the first ``reference_n`` training images (``None``: all).
        bootstrap: FID bootstrap resamples.
        classifier_epochs: the feature classifier's epochs (``None``: the data set's default).
    """

    def __init__(self, data_cfg, data_shape, cache_dir, reference_n: int | None = None, bootstrap: int = 20,
                 classifier_epochs: int | None = None, seed: int = 0):
        from hydra.utils import instantiate

        from ..metrics import extract_features, feature_statistics, make_extractor
        from ..metrics.data import load_split

        self.extractor = make_extractor("classifier", data_cfg, tuple(data_shape), labelled=True, cache_dir=cache_dir, seed=seed,
                                        epochs=classifier_epochs)
        reference = load_split(instantiate(data_cfg), "train", reference_n)
        self.reference = extract_features(self.extractor, reference.x).features
        self.reference_stats = feature_statistics(self.reference)
        self.bootstrap = bootstrap
        self.seed = seed

    @property
    def space(self) -> str:
        return self.extractor.space

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, k: int = 3) -> QualityReport:
        """Quality of ``images`` ``[n, C, H, W]`` in ``[−1, 1]`` (``labels`` ``[n]``: their target classes)."""
        from ..metrics import (
            extract_features,
            feature_statistics,
            frechet_distance,
            inception_score,
        )
        from ..metrics.precision_recall import precision_recall
        from ..utils.images import to_uint8

        feats = extract_features(self.extractor, to_uint8(images))
        f, n = feats.features, images.shape[0]
        fid = frechet_distance(feature_statistics(f), self.reference_stats)
        gen = torch.Generator().manual_seed(self.seed)
        boot = [frechet_distance(feature_statistics(f[torch.randint(n, (n,), generator=gen)]), self.reference_stats)
                for _ in range(self.bootstrap)]
        splits = min(10, n)
        score = inception_score(feats.logits, splits=splits)
        pr = precision_recall(self.reference, f, k=k)
        target = None
        if labels is not None:
            target = binomial(float((feats.logits.argmax(1) == labels.cpu()).double().mean()), n)
        return QualityReport(
            fid=Measured(fid, float(torch.tensor(boot).std()) if self.bootstrap > 1 else 0.0),
            inception_score=Measured(score.mean, score.std / math.sqrt(splits)),
            precision=binomial(pr["precision"], n),
            recall=binomial(pr["recall"], self.reference.shape[0]),
            target_accuracy=target,
        )
