"""The attribute classifier of ``shapes``: reads colour, shape, size, count and relation off pixels.

It is trained on fresh renders (:func:`~diffzoo.data.shapes.sample_scenes` +
:func:`~diffzoo.data.shapes.render_scenes`, stream ``"classifier"``, every composition including the
held-out ones — it is an evaluator, not a generative model) and tested on other fresh renders
(stream ``"classifier-test"``). Like the data sets' feature classifiers (``metrics.classifier``) its
weights and a JSON card (per-attribute test accuracy) are cached as
``<cache_dir>/classifiers/shapes-attributes-<hash>.{pt,json}``, the hash covering the render
settings and the training setup; a missing file is retrained on demand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.shapes import SHAPES_ATTRIBUTES, render_scenes, sample_scenes
from ..utils.io import save_with_card
from ..utils.random import derive_seed
from .data import stable_hash

__all__ = ["AttributeCNN", "AttributeCard", "ShapesAttributeReader", "train_shapes_attribute_classifier",
           "shapes_classifier_path", "load_or_train_shapes_classifier", "DEFAULT_STEPS"]

DEFAULT_STEPS = 400  # Adam steps of batch 128: ≥ 99.9 % on every attribute of fresh renders (16×16: 25–40 s on one CPU core; 32×32: ~4× that)
DEFAULT_LR = 3e-3
_CACHE_VERSION = 1
IGNORE = -1  # an attribute that does not apply (the second shape of a one-shape scene)


class AttributeCNN(nn.Module):
    """``conv3×3(C→w) → conv3×3/2(w→2w) → conv3×3(2w→2w) → conv3×3/2(2w→2w)`` (each with batch norm
    and ReLU) ``→ avg-pool to 4×4 → Linear(32w→h) → ReLU`` and one ``Linear(h→|values|)`` head per attribute. The flattened 4×4 map
    keeps where things are (left / right, above / below), which a global pool would lose.

    Input: float ``[B, C, H, W]`` in ``[-1, 1]`` (or uint8 bytes), ``H, W ≥ 4``; output: attribute
    name → logits ``[B, |values|]``.
    """

    def __init__(self, heads: Mapping[str, int], in_channels: int = 3, width: int = 24, hidden: int = 256):
        super().__init__()
        self.heads_spec, self.in_channels, self.width, self.hidden = dict(heads), in_channels, width, hidden
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * w, hidden), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in self.heads_spec.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()
        h = self.body(x)
        return {name: head(h) for name, head in self.heads.items()}

    def hparams(self) -> dict:
        return {"heads": self.heads_spec, "in_channels": self.in_channels, "width": self.width, "hidden": self.hidden}


class ShapesAttributeReader:
    """Reads the attributes of ``shapes`` images: ``reader(images, attributes=None)`` → name →
    int64 ``[B]`` (the argmax of each head). ``images`` ``[B, 3, H, W]`` in ``[-1, 1]``; the target
    attributes are not used (the signature is shared with readers that need the prompt)."""

    def __init__(self, net: AttributeCNN, batch_size: int = 1024):
        self.net, self.batch_size = net.eval().requires_grad_(False), batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, attributes: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        device = next(self.net.parameters()).device
        parts = [self.net(images[i: i + self.batch_size].to(device)) for i in range(0, len(images), self.batch_size)]
        return {name: torch.cat([p[name] for p in parts]).argmax(1).cpu() for name in self.net.heads_spec}


@dataclass
class AttributeCard:
    """Stored next to the weights: the render settings, the training setup and the per-attribute
    accuracy on ``n_test`` fresh renders."""

    key: str
    image_size: int
    supersample: int
    seed: int
    steps: int
    batch_size: int
    test_accuracy: dict[str, float]
    n_test: int
    hparams: dict


def _batch(seed: int, stream: str, start: int, n: int, image_size: int, supersample: int):
    scenes = sample_scenes(seed, stream, np.arange(start, start + n), mode="any")
    targets = {k: torch.as_tensor(scenes[k], dtype=torch.long) for k in SHAPES_ATTRIBUTES}
    return render_scenes(scenes, image_size, supersample), targets


def shapes_classifier_path(cache_dir, image_size: int = 16, supersample: int = 4, seed: int = 0, steps: int = DEFAULT_STEPS,
                           batch_size: int = 128, lr: float = DEFAULT_LR) -> Path:
    """``<cache_dir>/classifiers/shapes-attributes-<hash>.pt`` for these render and training settings."""
    key = stable_hash({"image_size": image_size, "supersample": supersample, "seed": seed, "steps": steps,
                       "batch_size": batch_size, "lr": lr, "version": _CACHE_VERSION})
    return Path(cache_dir) / "classifiers" / f"shapes-attributes-{key}.pt"


def attribute_accuracy(reader, images: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per-attribute accuracy of ``reader`` on ``images`` over the entries where the target applies (≥ 0)."""
    pred = reader(images, targets)
    return {k: float((pred[k][t >= 0] == t[t >= 0]).float().mean()) for k, t in targets.items() if bool((t >= 0).any())}


def train_shapes_attribute_classifier(cache_dir=None, image_size: int = 16, supersample: int = 4, seed: int = 0, steps: int = DEFAULT_STEPS,
                                      batch_size: int = 128, lr: float = DEFAULT_LR, n_test: int = 2000, verbose: bool = True) -> tuple[AttributeCNN, AttributeCard]:
    """Train an :class:`AttributeCNN` on fresh renders (``image_size``, ``supersample`` as the data module's): step ``k`` sees scenes ``kB … (k+1)B − 1``
    of stream ``"classifier"`` (seed ``seed``), loss = Σ over attributes of the cross-entropy
    (entries that do not apply ignored); Adam with a cosine-decayed ``lr``. Deterministic given
    ``seed``. Tested on ``n_test`` scenes of stream ``"classifier-test"``. With ``cache_dir``, the
    weights and card are written to :func:`shapes_classifier_path`."""
    heads = {k: len(v) for k, v in SHAPES_ATTRIBUTES.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "shapes-attribute-classifier"))
        net = AttributeCNN(heads)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        net.train()
        for step in range(steps):
            x, targets = _batch(seed, "classifier", step * batch_size, batch_size, image_size, supersample)
            logits = net(x)
            loss = sum(F.cross_entropy(logits[k], targets[k], ignore_index=IGNORE) for k in heads)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    x, targets = _batch(seed, "classifier-test", 0, n_test, image_size, supersample)
    accuracy = attribute_accuracy(ShapesAttributeReader(net), x.float() / 127.5 - 1, targets)
    path = shapes_classifier_path(cache_dir or ".", image_size, supersample, seed, steps, batch_size, lr)
    card = AttributeCard(path.stem, image_size, supersample, seed, steps, batch_size, accuracy, n_test, net.hparams())
    if cache_dir is not None:
        save_with_card(path, net.state_dict(), asdict(card))
    if verbose:
        worst = min(accuracy, key=accuracy.get)
        print(f"trained shapes attribute classifier: lowest test accuracy {accuracy[worst]:.4f} ({worst}) on {n_test} fresh renders")
    return net, card


def load_or_train_shapes_classifier(cache_dir, image_size: int = 16, supersample: int = 4, seed: int = 0, steps: int = DEFAULT_STEPS,
                                    batch_size: int = 128, lr: float = DEFAULT_LR) -> tuple[ShapesAttributeReader, AttributeCard, Path]:
    """The cached classifier for these settings as a reader, training it first if its file is missing."""
    path = shapes_classifier_path(cache_dir, image_size, supersample, seed, steps, batch_size, lr)
    if not path.is_file():
        train_shapes_attribute_classifier(cache_dir, image_size, supersample, seed, steps, batch_size, lr)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    card = AttributeCard(**ckpt["card"])
    net = AttributeCNN(**card.hparams)
    net.load_state_dict(ckpt["state_dict"])
    return ShapesAttributeReader(net), card, path
