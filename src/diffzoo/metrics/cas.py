"""Classification Accuracy Score (Ravuri & Vinyals 2019, "Classification Accuracy Score for Conditional
Generative Models", §3): train a classifier on *generated* labelled samples only, then measure its
accuracy on the *real* test set. A generator whose class-conditional distributions match the data's
scores what the same classifier trained on real data scores; missing modes or wrong classes lower it.
CDM reports it as its second metric (Ho, Saharia et al. 2021, §4.2, Table 2).

The classifier here is the project's :class:`~diffzoo.metrics.classifier.SmallCNN`, trained with one
fixed recipe (Adam, cross-entropy, seeded order), so the *real-data baseline* — the same recipe on as
many real training images — is reported beside CAS and the two are comparable (the paper puts a
ResNet-50's real-data accuracy beside its CAS the same way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..utils.random import derive_seed
from .classifier import SmallCNN

__all__ = ["CASResult", "fit_classifier", "test_accuracy", "classification_accuracy_score"]


@dataclass(frozen=True)
class CASResult:
    """``cas``: top-1 accuracy on the real test set of the classifier trained on the generated samples;
    ``real_accuracy``: the same recipe trained on ``n_train`` real training images (``None``: not run);
    ``n_train``, ``n_test``, ``epochs``: the setup."""

    cas: float
    real_accuracy: float | None
    n_train: int
    n_test: int
    epochs: int

    def as_dict(self) -> dict:
        return asdict(self)


def fit_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int = 10, seed: int = 0,
                   batch_size: int = 128, lr: float = 2e-3) -> SmallCNN:
    """Train a :class:`SmallCNN` on uint8 images ``x`` ``[N, C, H, W]`` with labels ``y`` int64 ``[N]``
    (Adam, cross-entropy, an order reshuffled each epoch from a seeded generator); deterministic given ``seed``."""
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise TypeError(f"fit_classifier takes uint8 [N, C, H, W] images, got {x.dtype} {tuple(x.shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "cas"))
        net = SmallCNN(x.shape[1], num_classes)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        order = torch.Generator().manual_seed(derive_seed(seed, "cas-order"))
        for _ in range(int(epochs)):
            net.train()
            perm = torch.randperm(len(x), generator=order)
            for i in range(0, len(perm), batch_size):
                idx = perm[i: i + batch_size]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return net.eval()


@torch.no_grad()
def test_accuracy(net: SmallCNN, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``net`` on uint8 images ``x`` ``[N, C, H, W]`` with labels ``y`` ``[N]``."""
    correct = sum(int((net(x[i: i + batch_size]).argmax(1) == y[i: i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    return correct / max(len(x), 1)


def classification_accuracy_score(generated_x: torch.Tensor, generated_y: torch.Tensor, test_x: torch.Tensor,
                                  test_y: torch.Tensor, num_classes: int, real_x: torch.Tensor | None = None,
                                  real_y: torch.Tensor | None = None, epochs: int = 10, seed: int = 0) -> CASResult:
    """CAS (Ravuri & Vinyals 2019, §3): accuracy on the real test set (``test_x``, ``test_y``) of a
    classifier trained on the generated ``(generated_x, generated_y)``; with ``real_x`` / ``real_y`` also the
    real-data baseline, trained by the same recipe on the first ``len(generated_x)`` real training images.
    All images uint8 ``[N, C, H, W]``, labels int64 ``[N]``."""
    n = len(generated_x)
    cas = test_accuracy(fit_classifier(generated_x, generated_y, num_classes, epochs, seed), test_x, test_y)
    real = None
    if real_x is not None and real_y is not None:
        real = test_accuracy(fit_classifier(real_x[:n], real_y[:n], num_classes, epochs, seed), test_x, test_y)
    return CASResult(cas=cas, real_accuracy=real, n_train=n, n_test=len(test_x), epochs=int(epochs))
