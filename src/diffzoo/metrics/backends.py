"""Who turns features into FID / KID / IS: torch-fidelity (default), torchmetrics, or diffzoo's own
maths (:mod:`diffzoo.metrics.fid`). All three receive the same features of the same uint8 images,
so they differ only in arithmetic (and in how KID / IS draw subsets and splits)."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import nn

from .fid import feature_statistics, frechet_distance, inception_score, kernel_inception_distance
from .reference import ReferenceStats

__all__ = ["BACKENDS", "MeanStd", "MetricBackend", "get_backend"]

BACKENDS = ("torch-fidelity", "torchmetrics", "diffzoo")


class MeanStd(NamedTuple):
    """A value over random subsets / splits: mean and standard deviation."""

    mean: float
    std: float


class MetricBackend(Protocol):
    name: str

    def fid(self, features: torch.Tensor, ref: ReferenceStats) -> float:
        """Fréchet distance of generated ``features`` ``[N, d]`` to the reference."""
        ...

    def kid(self, features: torch.Tensor, ref: ReferenceStats, subsets: int, subset_size: int, seed: int) -> MeanStd:
        """KID over ``subsets`` draws of ``subset_size`` rows (≤ both set sizes)."""
        ...

    def inception_score(self, logits: torch.Tensor, splits: int) -> MeanStd:
        """IS of logits ``[N, K]`` over ``splits`` chunks."""
        ...


class DiffzooBackend:
    """:mod:`diffzoo.metrics.fid` (eigen-based ``Tr √(Σ₁Σ₂)``, seeded KID subsets, unshuffled IS splits)."""

    name = "diffzoo"

    def fid(self, features, ref):
        return frechet_distance(feature_statistics(features), ref.stats)

    def kid(self, features, ref, subsets, subset_size, seed):
        r = kernel_inception_distance(features, ref.features, subsets=subsets, subset_size=subset_size, seed=seed)
        return MeanStd(r.mean, r.std)

    def inception_score(self, logits, splits):
        r = inception_score(logits, splits)
        return MeanStd(r.mean, r.std)


class TorchFidelityBackend:
    """torch-fidelity's metric functions on precomputed features (its reference implementation
    of the TF-FID / KID / IS arithmetic)."""

    name = "torch-fidelity"

    def fid(self, features, ref):
        from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

        ref_stats = {"mu": ref.stats.mu.numpy(), "sigma": ref.stats.sigma.numpy()}
        out = fid_statistics_to_metric(fid_features_to_statistics(features.double()), ref_stats, verbose=False)
        return float(out[KEY_METRIC_FID])

    def kid(self, features, ref, subsets, subset_size, seed):
        from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

        size = min(subset_size, features.shape[0], ref.features.shape[0])
        out = kid_features_to_metric(features.double(), ref.features.double(), kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False)
        return MeanStd(float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]))

    def inception_score(self, logits, splits):
        from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

        out = isc_features_to_metric(logits.double(), splits=splits, shuffle=False)
        return MeanStd(float(out[KEY_METRIC_ISC_MEAN]), float(out[KEY_METRIC_ISC_STD]))


class _Identity(nn.Module):
    """torchmetrics' ``feature=`` for features that are already computed."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class TorchmetricsBackend:
    """torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` / ``InceptionScore``
    fed the features through an identity ``feature=`` module (float64). The features are already
    gathered from every process, so torchmetrics' own cross-process sync is turned off. KID
    subsets and IS shuffling use torch's global RNG, seeded here inside a forked RNG state."""

    name = "torchmetrics"

    def fid(self, features, ref):
        from torchmetrics.image.fid import FrechetInceptionDistance

        m = FrechetInceptionDistance(feature=_Identity(features.shape[1]), sync_on_compute=False)
        m.update(ref.features.double(), real=True)
        m.update(features.double(), real=False)
        return float(m.compute())

    def kid(self, features, ref, subsets, subset_size, seed):
        from torchmetrics.image.kid import KernelInceptionDistance

        size = min(subset_size, features.shape[0], ref.features.shape[0])
        m = KernelInceptionDistance(feature=_Identity(features.shape[1]), subsets=subsets, subset_size=size, sync_on_compute=False)
        m.update(ref.features.double(), real=True)
        m.update(features.double(), real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = m.compute()
        return MeanStd(float(mean), float(std))

    def inception_score(self, logits, splits):
        from torchmetrics.image.inception import InceptionScore

        m = InceptionScore(feature=_Identity(logits.shape[1]), splits=splits, sync_on_compute=False)
        m.update(logits.double())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            mean, std = m.compute()
        return MeanStd(float(mean), float(std))


_BACKENDS = {"torch-fidelity": TorchFidelityBackend, "torchmetrics": TorchmetricsBackend, "diffzoo": DiffzooBackend}


def get_backend(name: str) -> MetricBackend:
    """The backend called ``name`` (one of :data:`BACKENDS`)."""
    if name not in _BACKENDS:
        raise ValueError(f"metrics backend {name!r} is not one of {list(BACKENDS)}")
    return _BACKENDS[name]()
