"""Feature extractors: uint8 images in, feature vectors (for FID / KID) and logits (for IS) out.

Every extractor takes the same input — uint8 ``[B, C, H, W]``, the bytes a PNG would hold,
quantised once from ``[-1, 1]`` by :func:`~diffzoo.utils.images.to_uint8` — so the numbers do not
depend on float-vs-uint8 or resizing choices made elsewhere. Two kinds exist:

* ``inception``: torch-fidelity's Inception-v3 (the TF-FID network), for RGB data of ≥ 32 px;
  see :mod:`diffzoo.metrics.inception`.
* ``classifier``: a small CNN trained on the data set itself (:mod:`diffzoo.metrics.classifier`),
  for digits / Fashion-MNIST; its feature space is named after the data set.

The classifier is also registered with torch-fidelity (``diffzoo-classifier``, weights path as
``feature_extractor_weights_path``) and is a plain module torchmetrics accepts as ``feature=``.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import ConfigError
from .classifier import SmallCNN, load_classifier, load_or_train_classifier
from .feature_types import Features

__all__ = [
    "EXTRACTOR_KINDS",
    "Features",
    "FeatureExtractor",
    "ClassifierFeatures",
    "extract_features",
    "choose_extractor_kind",
    "make_extractor",
    "TorchmetricsFeature",
    "register_torch_fidelity_classifier",
    "TORCH_FIDELITY_CLASSIFIER",
]

EXTRACTOR_KINDS = ("auto", "inception", "classifier")
TORCH_FIDELITY_CLASSIFIER = "diffzoo-classifier"
INCEPTION_MIN_SIZE = 32  # Inception on smaller images (upsampled ≥ 9×) measures the upsampling


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the metrics need from an extractor.

    Attributes:
        space: the feature space's name in metric names (``"inception"``, ``"digits"``, …).
        identity: a string that changes whenever the features would (weights hash, layer), used
            in reference-statistics cache keys and logged with every number.
        resize: how inputs are resized before the network (part of the reference key).
        feature_dim: width ``d`` of the features.
    """

    space: str
    identity: str
    resize: str
    feature_dim: int

    def __call__(self, images: torch.Tensor) -> Features:
        """uint8 ``[B, C, H, W]`` → :class:`Features`."""
        ...


class ClassifierFeatures(nn.Module):
    """A :class:`SmallCNN` as a :class:`FeatureExtractor` (its penultimate layer and logits)."""

    resize = "none"

    def __init__(self, net: SmallCNN, space: str, identity: str):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.space, self.identity, self.feature_dim = space, identity, net.feature_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Features:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"feature extractors take uint8 [B, C, H, W] images, got {images.dtype} {tuple(images.shape)}")
        f, logits = self.net.features_and_logits(images.to(next(self.net.parameters()).device))
        return Features(f.float(), logits.float())


@torch.no_grad()
def extract_features(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int = 256) -> Features:
    """Run ``extractor`` over uint8 ``images`` ``[N, C, H, W]`` in batches → :class:`Features` (CPU)."""
    parts = [extractor(images[i: i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return Features(torch.cat([p.features.cpu() for p in parts]), torch.cat([p.logits.cpu() for p in parts]))


def choose_extractor_kind(kind: str, data_shape: tuple[int, ...], labelled: bool) -> str:
    """Resolve ``auto``: Inception for RGB images of at least 32 px, else the data set's
    classifier (labelled data only). Explicit kinds are validated against the data."""
    if kind not in EXTRACTOR_KINDS:
        raise ConfigError(f"extractor={kind!r} is not one of {list(EXTRACTOR_KINDS)}")
    if len(data_shape) != 3:
        raise ConfigError(f"image metrics need image data [C, H, W], got data shape {tuple(data_shape)}; use metrics=[swd,mmd,loglik] for points")
    rgb_large = data_shape[0] == 3 and min(data_shape[1:]) >= INCEPTION_MIN_SIZE
    if kind == "auto":
        kind = "inception" if rgb_large or not labelled else "classifier"
    if kind == "classifier" and not labelled:
        raise ConfigError("extractor=classifier needs a labelled data set to train its classifier on, and this data set has no "
                          "labels; use extractor=inception (or callbacks.evaluation=null in training)")
    return kind


def make_extractor(kind: str, data_cfg: Mapping[str, Any], data_shape: tuple[int, ...], labelled: bool, cache_dir, device="cpu", seed: int = 0, epochs: int | None = None) -> FeatureExtractor:
    """Build the extractor of ``kind`` for the data of ``data_cfg`` (training the classifier
    into ``cache_dir`` if needed). Call under :func:`~diffzoo.metrics.distributed.rank_zero_first`
    when several processes share the cache."""
    kind = choose_extractor_kind(kind, data_shape, labelled)
    if kind == "inception":
        from .inception import InceptionFeatures

        return InceptionFeatures().to(device)
    net, card, path = load_or_train_classifier(data_cfg, cache_dir, seed=seed, epochs=epochs)
    return ClassifierFeatures(net, card.dataset, identity=f"classifier:{path.stem}").to(device)


class TorchmetricsFeature(nn.Module):
    """Adapts an extractor to torchmetrics' ``feature=`` argument (FID / KID want features, IS
    wants logits): ``output="features"`` or ``"logits"``. ``num_features`` (the extractor's
    ``feature_dim``) spares torchmetrics its probe with a random 3×299×299 image."""

    def __init__(self, extractor: FeatureExtractor, output: str = "features"):
        super().__init__()
        if output not in Features._fields:
            raise ValueError(f"output={output!r} is not one of {list(Features._fields)}")
        self.extractor, self.output = extractor, output
        if output == "features":
            self.num_features = int(extractor.feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return getattr(self.extractor(images), self.output)


def _torch_fidelity_classifier_class():
    from torch_fidelity import FeatureExtractorBase

    class TorchFidelityClassifier(FeatureExtractorBase):
        """A diffzoo classifier inside torch-fidelity: ``feature_extractor_weights_path`` names
        the ``.pt`` written by :func:`~diffzoo.metrics.classifier.train_classifier`."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            if feature_extractor_weights_path is None:
                raise ValueError(f"{TORCH_FIDELITY_CLASSIFIER} needs feature_extractor_weights_path=<classifier .pt>")
            self.net, _ = load_classifier(feature_extractor_weights_path)

        @staticmethod
        def get_provided_features_list():
            return Features._fields

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits"}.get(metric, "features")

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)

        def forward(self, x):
            f, logits = self.net.features_and_logits(x)
            out = {"features": f, "logits": logits}
            return tuple(out[name] for name in self.features_list)

    return TorchFidelityClassifier


def register_torch_fidelity_classifier() -> str:
    """Register diffzoo classifiers with torch-fidelity (idempotent) and return the name to pass
    as ``feature_extractor=``, together with ``feature_extractor_weights_path=<classifier .pt>``."""
    from torch_fidelity import register_feature_extractor
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if TORCH_FIDELITY_CLASSIFIER not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(TORCH_FIDELITY_CLASSIFIER, _torch_fidelity_classifier_class())
    return TORCH_FIDELITY_CLASSIFIER
