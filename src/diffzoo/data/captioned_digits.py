"""``captioned_digits``: scikit-learn's digits with captions of their class and stroke weight.

Attributes: ``class`` (0–9, the digit) and ``bold`` (1 = bold, 0 = thin). An image is *bold* when
its ink mass — the sum of its pixels mapped to ``[0, 1]``, ``Σ (x + 1) / 2`` — is above the median
ink mass of its class **on the training split** (the medians are fixed at ``setup`` and reused for
the held-out split and for generated images, so the attribute is read off pixels without a
classifier; the attribute as issue 14 defines it). About half of each class is bold.

Captions (``data.captions.TemplateGrammar``): five training templates ("a bold digit seven", "a
handwritten 7, bold", …) and three held-out paraphrase templates with their own words ("the
numeral 7, drawn heavily", "a picture of a thick seven", …) never used in training.
"""

from __future__ import annotations

import torch

from .base import DataSplits
from .captioned import ClassAttributeDataModule
from .captions import TemplateGrammar
from .digits import DIGITS_SIZE, DigitsDataModule

__all__ = ["CaptionedDigitsDataModule", "DIGITS_GRAMMAR", "NUMBER_WORDS", "ink_mass"]

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# attribute value → its words, per register (the held-out words never occur in training captions)
_WEIGHT = {"bold": ("thin", "bold")}
_ADVERB = ("lightly", "heavily")
_ADJECTIVE = ("slender", "thick")
_STROKE = ("fine", "heavy")


def _fields():
    return {
        "word": lambda a, r: [NUMBER_WORDS[a["class"]]],
        "numeral": lambda a, r: [str(a["class"])],
        "bold": lambda a, r: [_WEIGHT["bold"][a["bold"]]],
        "adverb": lambda a, r: [_ADVERB[a["bold"]]],
        "adjective": lambda a, r: [_ADJECTIVE[a["bold"]]],
        "stroke": lambda a, r: [_STROKE[a["bold"]]],
    }


DIGITS_GRAMMAR = TemplateGrammar(
    attribute_values={"class": NUMBER_WORDS, "bold": ("thin", "bold")},
    templates={
        "train": (
            "a {bold} digit {word}",
            "a handwritten {numeral}, {bold}",
            "a {bold} handwritten {word}",
            "the digit {word}, {bold}",
            "a {bold} {numeral}",
        ),
        "heldout": (
            "the numeral {numeral}, drawn {adverb}",
            "a picture of a {adjective} {word}",
            "an image of the number {word} in a {stroke} stroke",
        ),
    },
    fields=_fields(),
)


def ink_mass(x: torch.Tensor) -> torch.Tensor:
    """Ink mass of images ``[N, C, H, W]`` in ``[-1, 1]``: float64 ``[N]``, ``Σ (x + 1) / 2`` over
    channels and pixels (for native 8×8 digits: the sum of the 0…16 counts divided by 16)."""
    return ((x.double() + 1) / 2).flatten(1).sum(1)


class CaptionedDigitsDataModule(ClassAttributeDataModule):
    """Digits with captions (see the module docstring); the same split as ``DigitsDataModule``.

    Args:
        image_size, n_val, split_seed: as :class:`~diffzoo.data.DigitsDataModule`.
        context_length: tokens per caption (``L``).
        caption_seed: seed of the phrasing each image gets.
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of ``DiffusionDataModule``.

    ``eval_set("heldout")`` / ``prompts("heldout", n)``: the held-out images / every
    (class, bold) pair captioned with the held-out paraphrases.
    """

    attribute_name = "bold"
    grammar = DIGITS_GRAMMAR

    def __init__(self, image_size: int = DIGITS_SIZE, n_val: int = 297, split_seed: int = 0,
                 context_length: int = 16, caption_seed: int = 0, **loader):
        super().__init__(context_length=context_length, caption_seed=caption_seed, **loader)
        self._digits = DigitsDataModule(image_size=image_size, n_val=n_val, split_seed=split_seed, batch_size=self.batch_size)
        self.name = "captioned_digits"
        self.data_shape = self._digits.data_shape
        self.num_classes = 10

    measure = staticmethod(ink_mass)

    def _labelled_splits(self) -> DataSplits:
        return self._digits.load_splits()
