"""``captioned_fashion_mnist``: Fashion-MNIST with captions of the garment and its brightness.

Attributes: ``class`` (0–9, Fashion-MNIST's labels) and ``light`` (1 = light, 0 = dark). An image
is *light* when its mean pixel intensity (over the whole image, background included: a large
bright garment counts as light) is above the median of its class **on the training split**; the
medians are fixed at ``setup`` and reused for the held-out split and for generated images.

Captions: training templates with two or three synonyms per class ("a photo of a light sneaker",
"a trainer", "a running shoe", …) and held-out paraphrases with other templates, nouns and
adjectives ("a snapshot of a pale athletic shoe"), never used in training. The images are read by
:class:`~diffzoo.data.FashionMNISTDataModule` (the real files, or the project's fake files in tests).
"""

from __future__ import annotations

import torch

from .base import DataSplits
from .captioned import ClassAttributeDataModule
from .captions import TemplateGrammar, with_article
from .fashion_mnist import DEBIAN_FASHION_MNIST_DIR, FASHION_MNIST_SIZE, FashionMNISTDataModule

__all__ = ["CaptionedFashionMNISTDataModule", "FASHION_GRAMMAR", "FASHION_CLASSES", "mean_intensity"]

# Fashion-MNIST's label order (Xiao et al. 2017, Table 1)
FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
_NOUNS = {  # class → training synonyms, held-out nouns
    "train": (
        ("t-shirt", "top"), ("pair of trousers", "pair of pants"), ("pullover", "sweater"), ("dress",),
        ("coat", "jacket"), ("sandal", "summer sandal"), ("shirt", "button-up shirt"),
        ("sneaker", "trainer", "running shoe"), ("bag", "handbag"), ("ankle boot", "boot"),
    ),
    "heldout": (
        ("tee",), ("pair of slacks",), ("jumper",), ("gown",), ("overcoat",), ("flip-flop",), ("blouse",),
        ("athletic shoe",), ("purse",), ("bootie",),
    ),
}
_SHADE = {"train": ("dark", "light"), "heldout": ("deep-toned", "pale")}


def _fields():
    def nouns(a, r):
        return _NOUNS[r][a["class"]]

    return {
        "a_shade_noun": lambda a, r: [with_article(f"{_SHADE[r][a['light']]} {n}") for n in nouns(a, r)],
        "a_noun": lambda a, r: [with_article(n) for n in nouns(a, r)],
        "shade": lambda a, r: [_SHADE[r][a["light"]]],
    }


FASHION_GRAMMAR = TemplateGrammar(
    attribute_values={"class": FASHION_CLASSES, "light": ("dark", "light")},
    templates={
        "train": ("a photo of {a_shade_noun}", "{a_shade_noun}", "a picture of {a_noun}, {shade}", "{a_noun} in {shade} colours"),
        "heldout": ("a snapshot of {a_shade_noun}", "an image showing {a_noun} in {shade} shades"),
    },
    fields=_fields(),
)


def mean_intensity(x: torch.Tensor) -> torch.Tensor:
    """Mean intensity of images ``[N, C, H, W]`` in ``[-1, 1]``: float64 ``[N]``, the mean of ``(x + 1) / 2``."""
    return ((x.double() + 1) / 2).flatten(1).mean(1)


class CaptionedFashionMNISTDataModule(ClassAttributeDataModule):
    """Fashion-MNIST with captions (see the module docstring); splits as ``FashionMNISTDataModule``.

    Args:
        root, download, image_size, system_dir: as :class:`~diffzoo.data.FashionMNISTDataModule`.
        context_length: tokens per caption (``L``).
        caption_seed: seed of the phrasing each image gets.
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of ``DiffusionDataModule``.
    """

    attribute_name = "light"
    grammar = FASHION_GRAMMAR

    def __init__(self, root: str = "data", download: bool = False, image_size: int = FASHION_MNIST_SIZE,
                 system_dir: str | None = DEBIAN_FASHION_MNIST_DIR, context_length: int = 16, caption_seed: int = 0, **loader):
        super().__init__(context_length=context_length, caption_seed=caption_seed, **loader)
        self._fashion = FashionMNISTDataModule(root=root, download=download, image_size=image_size,
                                               system_dir=system_dir, batch_size=self.batch_size)
        self.name = "captioned_fashion_mnist"
        self.data_shape = self._fashion.data_shape
        self.num_classes = 10

    measure = staticmethod(mean_intensity)

    def prepare_data(self) -> None:
        """Fetch the files when ``download`` is set (see ``FashionMNISTDataModule.prepare_data``)."""
        self._fashion.prepare_data()

    def _labelled_splits(self) -> DataSplits:
        return self._fashion.load_splits()
