"""``python -m diffzoo.metrics.train_classifier data=digits``: train (or show) the feature
classifier of a data set and print its held-out test accuracy.

    python -m diffzoo.metrics.train_classifier data=digits
    python -m diffzoo.metrics.train_classifier data=fashion_mnist epochs=10 force=true
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from .. import config as _config  # noqa: F401  (registers resolvers)
from ..errors import run_reporting_errors

__all__ = ["run", "main"]


def run(cfg: DictConfig) -> dict:
    """Train the classifier of ``cfg.data`` unless cached (or ``cfg.force``); return its card."""
    from .classifier import classifier_path, train_classifier
    from ..validation import validate_entry
    from .data import dataset_name

    validate_entry("train_classifier", cfg)  # types and ranges of every key, before anything is trained
    path = classifier_path(cfg.data, cfg.paths.cache_dir, dataset_name(cfg.data), cfg.arch, cfg.seed, cfg.epochs)
    if cfg.force or not path.is_file():
        train_classifier(cfg.data, cfg.paths.cache_dir, cfg.arch, cfg.seed, cfg.epochs)
    card = json.loads(path.with_suffix(".json").read_text())
    print(f"{card['dataset']} classifier ({card['arch']}, seed {card['seed']}, {card['epochs']} epochs): "
          f"test accuracy {card['test_accuracy']:.4f} on {card['n_test']} held-out images\n  weights: {path}")
    return card


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_classifier")
def _hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(run, cfg)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
