"""Caption alignment: how often generated images show what their prompts asked for (GenEval-style).

An *attribute reader* maps images ``[B, C, H, W]`` in ``[-1, 1]`` (and the prompts' target
attributes, which some readers need) to predicted attributes, name → int64 ``[B]``:

* ``shapes``: :class:`~diffzoo.metrics.attribute_classifier.ShapesAttributeReader`, a classifier
  trained on renders;
* ``captioned_digits`` / ``captioned_fashion_mnist``: :class:`ClassAttributeReader` — the class from
  a classifier, the binary attribute measured on the pixels against the training medians of the
  *prompted* class ("a bold seven" asks for more ink than the median seven).

:func:`caption_alignment` then scores each attribute separately (Ghosh et al. 2023, GenEval: per-
property correctness of generated images) and all of them together.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

__all__ = ["caption_alignment", "ClassAttributeReader", "AttributeReader"]

AttributeReader = Callable[[torch.Tensor, Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]


@torch.no_grad()
def caption_alignment(images: torch.Tensor, attributes: Mapping[str, torch.Tensor], reader: AttributeReader) -> dict[str, float]:
    """Per-attribute accuracy of ``images`` ``[B, C, H, W]`` (in ``[-1, 1]``) for their prompts'
    ``attributes`` (name → int64 ``[B]``, ``-1`` = does not apply), read by ``reader``.

    Returns ``{name: accuracy}`` — for each attribute, the fraction of images where it applies whose
    read value equals the target — and ``"all"``: the fraction of images whose every applicable
    attribute is read correctly (GenEval's whole-prompt correctness)."""
    pred = reader(images, attributes)
    missing = [k for k in attributes if k not in pred]
    if missing:
        raise KeyError(f"caption_alignment: the reader gives no {missing} (it reads {sorted(pred)})")
    out, every = {}, torch.ones(len(images), dtype=torch.bool)
    for name, target in attributes.items():
        target = torch.as_tensor(target).long().cpu()
        applies = target >= 0
        right = torch.as_tensor(pred[name]).long().cpu() == target
        every &= right | ~applies
        if applies.any():
            out[name] = float(right[applies].double().mean())
    out["all"] = float(every.double().mean())
    return out


class ClassAttributeReader:
    """Reader of a class + measured binary attribute (``captioned_digits``, ``captioned_fashion_mnist``).

    ``class`` is the argmax of ``classifier(images)`` (logits ``[B, K]``: e.g. the data set's
    feature classifier, ``metrics.classifier.SmallCNN``); the attribute is
    ``measure(images) > medians[target class]`` with the data module's training-split medians.

    Args:
        classifier: images ``[B, C, H, W]`` → logits ``[B, K]``.
        measure: images → float64 ``[B]`` (the data module's ``measure``: ink mass, mean intensity).
        medians: float64 ``[K]``, the data module's ``class_medians``.
        attribute_name: the attribute's key (``"bold"``, ``"light"``).
    """

    def __init__(self, classifier, measure: Callable[[torch.Tensor], torch.Tensor], medians: torch.Tensor, attribute_name: str):
        self.classifier, self.measure, self.attribute_name = classifier, measure, attribute_name
        self.medians = torch.as_tensor(medians, dtype=torch.float64)

    @classmethod
    def of(cls, datamodule, classifier) -> "ClassAttributeReader":
        """The reader of a set-up caption data module (its ``measure``, ``class_medians`` and attribute)."""
        datamodule.setup("fit")
        return cls(classifier, datamodule.measure, datamodule.class_medians, datamodule.attribute_name)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, attributes: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        target = torch.as_tensor(attributes["class"]).long().cpu()
        return {
            "class": self.classifier(images).argmax(1).long().cpu(),
            self.attribute_name: (self.measure(images.cpu()) > self.medians[target]).long(),
        }
