"""Metrics: FID / KID / IS back-ends, improved precision / recall and feature extractors, reference statistics, names that carry
their setup, distributed sample drawing, and toy 2-D metrics (``docs/ARCHITECTURE.md``, "Metrics")."""

from .attribute_classifier import AttributeCNN, ShapesAttributeReader, load_or_train_shapes_classifier, train_shapes_attribute_classifier
from .backends import BACKENDS, get_backend
from .caption_alignment import ClassAttributeReader, caption_alignment
from .classifier import SmallCNN, load_classifier, load_or_train_classifier, train_classifier
from .distributed import draw_samples, gather_by_index, shard_batches
from .features import ClassifierFeatures, FeatureExtractor, Features, extract_features, make_extractor, register_torch_fidelity_classifier
from .fid import FeatureStats, feature_statistics, frechet_distance, inception_score, kernel_inception_distance
from .inception import InceptionFeatures, InceptionWeightsMissing, ensure_inception_weights
from .naming import MetricRecord, metric_name
from .pipeline import EvalResult, EvalSetup, run_evaluation
from .precision_recall import knn_radii, manifold_membership, precision_recall
from .reference import ReferenceStats, reference_statistics
from .toy import mean_log_likelihood, mmd_rbf, sliced_wasserstein

from .likelihood_eval import LikelihoodSetup, likelihood_records
from .ode_nll import ODENLL, ode_nll
from .vlb import VLBBitsPerDim, vlb_bits_per_dim

__all__ = [
    "AttributeCNN",
    "ShapesAttributeReader",
    "train_shapes_attribute_classifier",
    "load_or_train_shapes_classifier",
    "ClassAttributeReader",
    "caption_alignment",
    "BACKENDS",
    "get_backend",
    "SmallCNN",
    "train_classifier",
    "load_classifier",
    "load_or_train_classifier",
    "shard_batches",
    "gather_by_index",
    "draw_samples",
    "Features",
    "FeatureExtractor",
    "ClassifierFeatures",
    "InceptionFeatures",
    "extract_features",
    "make_extractor",
    "register_torch_fidelity_classifier",
    "FeatureStats",
    "feature_statistics",
    "frechet_distance",
    "kernel_inception_distance",
    "inception_score",
    "precision_recall",
    "knn_radii",
    "manifold_membership",
    "InceptionWeightsMissing",
    "ensure_inception_weights",
    "MetricRecord",
    "metric_name",
    "EvalSetup",
    "EvalResult",
    "run_evaluation",
    "ReferenceStats",
    "reference_statistics",
    "sliced_wasserstein",
    "mmd_rbf",
    "mean_log_likelihood",
    "LikelihoodSetup",
    "likelihood_records",
    "ODENLL",
    "ode_nll",
    "VLBBitsPerDim",
    "vlb_bits_per_dim",
]
