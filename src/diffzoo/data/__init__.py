"""Data: Lightning data modules (batches ``{"x": [-1, 1] float32, "y": int64}``), the resumable
training sampler, and toy distributions with exact densities / scores."""

from .base import DataSplits, DiffusionDataModule, InMemoryDataset, MirroredDataset, collate_batch
from .caption_preview import save_caption_grid
from .captioned import CaptionedDataModule, CaptionedDataset
from .captioned_digits import CaptionedDigitsDataModule
from .captioned_fashion_mnist import CaptionedFashionMNISTDataModule
from .captions import EMPTY_CAPTION, PromptSet, WordTokenizer, drop_captions
from .cifar10 import CIFAR10DataModule
from .digits import DigitsDataModule
from .errors import DataNotFoundError
from .fashion_mnist import FashionMNISTDataModule
from .gaussian_mixture import GaussianMixture
from .image_folder import ImageFolderDataModule
from .sampler import InfiniteBatchSampler
from .shapes import ShapesDataModule
from .toy2d import (
    TOY_DISTRIBUTIONS,
    Checkerboard,
    EightGaussians,
    SwissRoll,
    Toy2DDataModule,
    ToyGaussianMixture,
    TwoMoons,
    make_toy_distribution,
)

__all__ = [
    "DiffusionDataModule",
    "DataSplits",
    "InMemoryDataset",
    "MirroredDataset",
    "collate_batch",
    "InfiniteBatchSampler",
    "DataNotFoundError",
    "GaussianMixture",
    "Toy2DDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "ImageFolderDataModule",
    "CaptionedDataModule",
    "CaptionedDataset",
    "CaptionedDigitsDataModule",
    "CaptionedFashionMNISTDataModule",
    "ShapesDataModule",
    "EMPTY_CAPTION",
    "PromptSet",
    "WordTokenizer",
    "drop_captions",
    "save_caption_grid",
    "TOY_DISTRIBUTIONS",
    "make_toy_distribution",
    "SwissRoll",
    "TwoMoons",
    "Checkerboard",
    "EightGaussians",
    "ToyGaussianMixture",
]
