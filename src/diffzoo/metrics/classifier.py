"""Small CNN classifiers whose features replace Inception on small grey data (digits, Fashion-MNIST).

Inception features of an 8×8 digit upsampled to 299×299 say little; a classifier trained on the
data set itself gives a feature space where FID / KID / IS mean something, offline. Metrics
computed in it carry the data set in their name (``fid_digits2k``), never plain ``fid``.

A classifier is trained on the *training* split with a fixed seed and tested on the held-out
split. Its weights and a JSON card (test accuracy, key) are cached as
``<cache_dir>/classifiers/<dataset>-<hash>.{pt,json}``, the hash covering (data identity, arch,
seed, epochs); a missing file is retrained on demand (:func:`load_or_train_classifier`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.io import save_with_card
from ..utils.random import derive_seed
from .data import build_datamodule, data_identity, dataset_name, load_split, stable_hash

__all__ = ["ARCHS", "DEFAULT_EPOCHS", "SmallCNN", "ClassifierCard", "classifier_path", "train_classifier", "load_classifier", "load_or_train_classifier"]

ARCHS = ("cnn",)
DEFAULT_EPOCHS = {"digits": 30, "fashion_mnist": 5}  # enough for ~98% / ~90% test accuracy
_FALLBACK_EPOCHS = 10
_CACHE_VERSION = 2  # bump when training changes, so old caches are not reused


class SmallCNN(nn.Module):
    """``conv3×3(C→w) → conv3×3/2(w→2w) → conv3×3/2(2w→2w) → global mean pool → Linear(2w→d) → ReLU``
    gives the ``d``-dim features; ``Linear(d→K)`` the logits. Input: uint8 ``[B, C, H, W]``
    (scaled to ``[-1, 1]`` inside) or float in ``[-1, 1]``; any ``H, W ≥ 4``.

    The features are divided by ``feature_scale`` (a buffer, set after training to the RMS
    per-dimension standard deviation on the training split), so their average variance is 1 —
    KID's cubic kernel ``(xᵀy/d + 1)³`` then sees O(1) inner products, as with Inception features.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.in_channels, self.num_classes, self.width, self.feature_dim = in_channels, num_classes, width, feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * width, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.register_buffer("feature_scale", torch.ones(()))

    @staticmethod
    def scale(x: torch.Tensor) -> torch.Tensor:
        """uint8 bytes → float ``[-1, 1]`` (``x/127.5 − 1``); float input is passed through."""
        return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[B, C, H, W]`` → features ``[B, d]`` and logits ``[B, K]`` (float32)."""
        f = self.body(self.scale(x))
        return f / self.feature_scale, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]

    def hparams(self) -> dict[str, int]:
        return {"in_channels": self.in_channels, "num_classes": self.num_classes, "width": self.width, "feature_dim": self.feature_dim}


@dataclass
class ClassifierCard:
    """What is stored next to the weights: the data set, its identity, the training setup and
    the test accuracy on the held-out split."""

    dataset: str
    key: str
    arch: str
    seed: int
    epochs: int
    test_accuracy: float
    n_train: int
    n_test: int
    data: dict[str, Any]
    hparams: dict[str, int]


def _resolve_epochs(dataset: str, epochs: int | None) -> int:
    return int(epochs) if epochs is not None else DEFAULT_EPOCHS.get(dataset, _FALLBACK_EPOCHS)


def classifier_path(data_cfg: Mapping[str, Any], cache_dir, dataset: str, arch: str = "cnn", seed: int = 0, epochs: int | None = None) -> Path:
    """``<cache_dir>/classifiers/<dataset>-<hash>.pt`` for this (data, arch, seed, epochs)."""
    if arch not in ARCHS:
        raise ValueError(f"classifier arch {arch!r} is not one of {list(ARCHS)}")
    key = stable_hash({"data": data_identity(data_cfg), "arch": arch, "seed": seed,
                       "epochs": _resolve_epochs(dataset, epochs), "version": _CACHE_VERSION})
    return Path(cache_dir) / "classifiers" / f"{dataset}-{key}.pt"


@torch.no_grad()
def _accuracy(net: SmallCNN, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    correct = sum(int((net(x[i: i + batch_size]).argmax(1) == y[i: i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    return correct / len(x)


def train_classifier(
    data_cfg: Mapping[str, Any],
    cache_dir,
    arch: str = "cnn",
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 2e-3,
    verbose: bool = True,
) -> ClassifierCard:
    """Train a :class:`SmallCNN` on the training split of ``data_cfg`` (labelled image data) and
    write ``<cache_dir>/classifiers/<dataset>-<hash>.{pt,json}``. Deterministic given ``seed``
    (Adam, cross-entropy, reshuffled each epoch from a seeded generator). Returns the card."""
    dm = build_datamodule(data_cfg)
    if len(dm.data_shape) != 3 or dm.num_classes is None:
        raise ValueError(f"a feature classifier needs labelled images; data {dm.name!r} has shape {dm.data_shape}, num_classes={dm.num_classes}")
    path = classifier_path(data_cfg, cache_dir, dm.name, arch, seed, epochs)
    n_epochs = _resolve_epochs(dm.name, epochs)
    train, test = load_split(dm, "train"), load_split(dm, "val")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "classifier", dm.name))
        net = SmallCNN(dm.data_shape[0], dm.num_classes)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        order = torch.Generator().manual_seed(derive_seed(seed, "classifier-order"))
        for _ in range(n_epochs):
            net.train()
            perm = torch.randperm(len(train.x), generator=order)
            for i in range(0, len(perm), batch_size):
                idx = perm[i: i + batch_size]
                loss = F.cross_entropy(net(train.x[idx]), train.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    net.eval()
    with torch.no_grad():
        f = torch.cat([net.body(net.scale(train.x[i: i + 1024])) for i in range(0, len(train.x), 1024)])
        net.feature_scale.fill_(float(f.var(0).mean().sqrt().clamp_min(1e-8)))
    card = ClassifierCard(
        dataset=dm.name, key=path.stem, arch=arch, seed=seed, epochs=n_epochs,
        test_accuracy=_accuracy(net, test.x, test.y), n_train=len(train.x), n_test=len(test.x),
        data=data_identity(data_cfg), hparams=net.hparams(),
    )
    save_with_card(path, net.state_dict(), asdict(card))
    if verbose:
        print(f"trained {dm.name} feature classifier: test accuracy {card.test_accuracy:.4f} "
              f"({card.n_test} held-out images, {n_epochs} epochs) -> {path}")
    return card


def load_classifier(path) -> tuple[SmallCNN, ClassifierCard]:
    """Rebuild a classifier and its card from a ``.pt`` written by :func:`train_classifier`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    card = ClassifierCard(**ckpt["card"])
    net = SmallCNN(**card.hparams)
    net.load_state_dict(ckpt["state_dict"])
    return net.eval().requires_grad_(False), card


def load_or_train_classifier(data_cfg: Mapping[str, Any], cache_dir, arch: str = "cnn", seed: int = 0, epochs: int | None = None) -> tuple[SmallCNN, ClassifierCard, Path]:
    """The cached classifier for this data, training it first if its file is missing."""
    dataset = dataset_name(data_cfg)
    path = classifier_path(data_cfg, cache_dir, dataset, arch, seed, epochs)
    if not path.is_file():
        train_classifier(data_cfg, cache_dir, arch, seed, epochs)
    net, card = load_classifier(path)
    return net, card, path
