"""Any folder of images, optionally one sub-folder per class.

``root/*.png`` gives unlabelled data; ``root/<class>/**/*.png`` gives labels ``0…K−1`` in the
sorted order of the class folder names. Each image is decoded by the rules of
:mod:`diffzoo.data.image_decode` (orientation, bit depth, transparency, colour), its shorter side
resized to ``resolution`` (bicubic, PIL's antialiased filter) and centre-cropped to a square.

Every file is decoded once at setup: files that cannot be read are skipped
(``data.on_bad_image=skip``, the default) or refused (``error``), with their count and the first few
paths reported once, so that a run never meets a bad file mid-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from diffzoo.errors import ConfigError, DiffzooError
from diffzoo.utils.random import derive_seed

from .base import DataSplits, DiffusionDataModule, InMemoryDataset, MirroredDataset, uint8_to_unit
from .errors import DataNotFoundError, check_choice
from .image_check import FolderCheck, check_images
from .image_decode import BAD_IMAGE_RULES, describe_error, load_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "FolderIndex",
    "ImageFileDataset",
    "ImageFolderDataModule",
    "load_image",
    "scan_image_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_CHANNELS = (1, 3)
_LISTED = 5  # bad files named in the setup report


class BadImageError(DiffzooError, OSError):
    """Image files that cannot be decoded, with ``data.on_bad_image=error``."""


class FolderIndex(NamedTuple):
    """The images of a folder: ``files`` in sorted order, their ``labels`` and the ``classes``
    (folder names) — both ``None`` for unlabelled data."""

    files: list[Path]
    labels: list[int] | None
    classes: list[str] | None


def _images_under(directory: Path, recursive: bool) -> list[Path]:
    found = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def scan_image_folder(root: str | Path, use_labels: bool = True) -> FolderIndex:
    """List the images under ``root``; with ``use_labels`` and class sub-folders, label them.

    Raises :class:`DataNotFoundError` when ``root`` is missing or holds no image, and
    ``ValueError`` when images lie both in ``root`` and in sub-folders while ``use_labels`` is set.
    """
    root = Path(root)
    how = (
        f"put images ({', '.join(IMAGE_EXTENSIONS)}), optionally one sub-folder per class, "
        f"under {root}, or set data.root"
    )
    if not root.is_dir():
        raise DataNotFoundError("image folder", [root], how)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not use_labels or not subdirs:
        files = _images_under(root, recursive=True)
        if not files:
            raise DataNotFoundError("images", [root], how)
        return FolderIndex(files, None, None)
    if _images_under(root, recursive=False):
        raise ValueError(
            f"{root}: images lie both in the folder and in sub-folders {[d.name for d in subdirs]}; "
            "move them into class folders, or set data.use_labels=false"
        )
    per_class = [(d.name, _images_under(d, recursive=True)) for d in subdirs]
    per_class = [(name, files) for name, files in per_class if files]
    if not per_class:
        raise DataNotFoundError("images", [root], how)
    files = [f for _, fs in per_class for f in fs]
    labels = [k for k, (_, fs) in enumerate(per_class) for _ in fs]
    return FolderIndex(files, labels, [name for name, _ in per_class])


class ImageFileDataset(Dataset):
    """Images decoded on access: item ``{"x": float32 [C, R, R] in [-1, 1], "y": int64 []}``
    (``"y"`` only with labels).

    The files were checked at setup; one that fails later all the same (changed on disk since) is
    replaced by the next file that decodes, with its own label (``on_bad_image=skip``), or raises
    :class:`BadImageError` (``error``).
    """

    def __init__(self, files: list[Path], labels: list[int] | None, resolution: int, channels: int,
                 on_bad_image: str = "skip"):
        self.files, self.labels = list(files), labels
        self.resolution, self.channels, self.on_bad_image = resolution, channels, on_bad_image

    def __len__(self) -> int:
        return len(self.files)

    def _decoded(self, i: int) -> tuple[int, torch.Tensor]:
        """The first index from ``i`` on (cyclically) whose file decodes, and its pixels."""
        for k in range(len(self.files)):
            j = (i + k) % len(self.files)
            try:
                return j, load_image(self.files[j], self.resolution, self.channels)
            except Exception as e:  # noqa: PERF203 - a decoder failure on a file that passed the setup check
                if self.on_bad_image == "error":
                    raise BadImageError(f"{self.files[j]}: {describe_error(e, self.files[j])} "
                                        "(data.on_bad_image=error; set data.on_bad_image=skip to skip such files)") from None
        raise BadImageError(f"none of the {len(self.files)} image files decodes any more (first: {self.files[0]})")

    def load_uint8(self, i: int) -> torch.Tensor:
        return self._decoded(i)[1]

    def __getitem__(self, i: int):
        i, x = self._decoded(i)
        item = {"x": uint8_to_unit(x)}
        if self.labels is not None:
            item["y"] = torch.tensor(self.labels[i], dtype=torch.long)
        return item

    def to_memory(self) -> InMemoryDataset:
        """Decode every image once into an :class:`InMemoryDataset` (uint8)."""
        if len(self) == 0:
            x = torch.empty(0, self.channels, self.resolution, self.resolution, dtype=torch.uint8)
            return InMemoryDataset(x, None if self.labels is None else torch.empty(0, dtype=torch.long))
        decoded = [self._decoded(i) for i in range(len(self))]  # (index used, pixels): a replaced file brings its label
        x = torch.stack([pixels for _, pixels in decoded])
        y = None if self.labels is None else torch.tensor([self.labels[j] for j, _ in decoded], dtype=torch.long)
        return InMemoryDataset(x, y)


class ImageFolderDataModule(DiffusionDataModule):
    """A folder of images as a data module.

    Args:
        root: the folder (see the module docstring for the layout).
        resolution: side of the square images after resize + centre crop.
        channels: 3 (RGB) or 1 (grey).
        use_labels: label images by class sub-folder (when there are sub-folders).
        val_fraction: share of the images held out (at least one image when > 0).
        split_seed: seed of the train/held-out split (independent of ``seed``, the data order).
        hflip: train on every image and its mirror image (see :class:`MirroredDataset`).
        in_memory: decode every image once in :meth:`setup` instead of on every access.
        on_bad_image: ``skip`` (default) or ``error``: what to do with files that cannot be decoded
            (not an image, truncated, empty); either way they are found and reported at setup.
        cache_dir: where the check's verdicts are kept per file (``<cache_dir>/image_checks/``), so
            that a folder is decoded in full once; ``None``: check every file at every setup.
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    def __init__(
        self,
        root: str = "data/images",
        resolution: int = 64,
        channels: int = 3,
        use_labels: bool = True,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        hflip: bool = False,
        in_memory: bool = False,
        on_bad_image: str = "skip",
        cache_dir: str | None = None,
        **loader,
    ):
        super().__init__(**loader)
        check_choice("data.channels", channels, list(_CHANNELS))
        if on_bad_image not in BAD_IMAGE_RULES:
            raise ConfigError(f"data.on_bad_image={on_bad_image!r} is not one of: {', '.join(BAD_IMAGE_RULES)}")
        if resolution <= 0 or not 0 <= val_fraction < 1:
            raise ValueError(
                f"need data.resolution > 0 and 0 <= data.val_fraction < 1, got {resolution}, {val_fraction}"
            )
        self.name = Path(root).name or "image_folder"
        self.root = str(root)
        self.resolution, self.channels = int(resolution), int(channels)
        self.use_labels, self.val_fraction, self.split_seed = bool(use_labels), float(val_fraction), int(split_seed)
        self.hflip, self.in_memory, self.on_bad_image = bool(hflip), bool(in_memory), on_bad_image
        self.cache_dir = None if cache_dir in (None, "") else str(cache_dir)
        self.data_shape = (self.channels, self.resolution, self.resolution)
        self._index: FolderIndex | None = None

    @property
    def index(self) -> FolderIndex:
        """The scanned folder (scanned on first use)."""
        if self._index is None:
            self._index = scan_image_folder(self.root, self.use_labels)
        return self._index

    @property
    def num_classes(self) -> int | None:
        """Number of class folders, or ``None`` for unlabelled data."""
        return None if self.index.classes is None else len(self.index.classes)

    def check(self) -> FolderCheck:
        """Decode every file once; report the bad ones (and upscaled small ones) once; refuse them
        with ``on_bad_image=error``, and a folder with no good image at all."""
        files = self.index.files
        found = check_images(files, self.resolution, threads=max(1, self.num_workers), cache=self._check_cache())
        _report_once(self.root, len(files), found, self.resolution, self.on_bad_image)
        if found.bad and self.on_bad_image == "error":
            raise BadImageError(f"data.root={self.root}: {_bad_summary(found.bad, len(files))}; fix or remove them, "
                                "or set data.on_bad_image=skip to train without them")
        if not any(found.good):
            raise DataNotFoundError("readable images", [self.root],
                                    f"none of the {len(files)} image files decodes ({_bad_summary(found.bad, len(files))})")
        return found

    def _check_cache(self) -> Path | None:
        """``<cache_dir>/image_checks/<hash of the folder's absolute path>.json``, or ``None``."""
        if self.cache_dir is None:
            return None
        import hashlib

        key = hashlib.sha1(str(Path(self.root).expanduser().resolve()).encode()).hexdigest()[:16]
        return Path(self.cache_dir).expanduser() / "image_checks" / f"{key}.json"

    def load_splits(self) -> DataSplits:
        files, labels, _ = self.index
        good = self.check().good
        n = len(files)
        n_val = 0 if self.val_fraction == 0 else min(n - 1, max(1, round(self.val_fraction * n)))
        g = torch.Generator()
        g.manual_seed(derive_seed(self.split_seed, "image-folder-split"))
        perm = torch.randperm(n, generator=g)
        splits = []
        # the split is drawn over every file, bad ones included: fixing or removing a bad file
        # moves no good file from one split to the other
        for idx in (perm[n_val:].sort().values, perm[:n_val].sort().values):
            idx = [int(i) for i in idx if good[i]]
            subset_labels = None if labels is None else [labels[i] for i in idx]
            subset = ImageFileDataset([files[i] for i in idx], subset_labels, self.resolution, self.channels,
                                      self.on_bad_image)
            splits.append(subset.to_memory() if self.in_memory else subset)
        train, val = splits
        return DataSplits(MirroredDataset(train) if self.hflip else train, val)


def _bad_summary(bad: list[tuple[Path, str]], total: int) -> str:
    """``3 of 50 image files cannot be decoded: a.png (cannot identify image file), … and 1 more``."""
    listed = ", ".join(f"{path} ({why})" for path, why in bad[:_LISTED])
    more = f" and {len(bad) - _LISTED} more" if len(bad) > _LISTED else ""
    return f"{len(bad)} of {total} image files cannot be decoded: {listed}{more}"


_REPORTED: set[tuple] = set()  # what this process has already reported (a data module set up twice says it once)


def _report_once(root: str, total: int, found: FolderCheck, resolution: int, rule: str) -> None:
    """One line per finding on stderr, from rank 0 only (DataLoader workers never run the check)."""
    import sys

    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    key = (root, total, tuple(p for p, _ in found.bad), found.small, resolution)
    if key in _REPORTED or getattr(rank_zero_only, "rank", 0) != 0:
        return
    _REPORTED.add(key)
    if found.bad and rule == "skip":
        print(f"diffzoo: data.root={root}: skipping {_bad_summary(found.bad, total)} (data.on_bad_image=skip)",
              file=sys.stderr, flush=True)
    if found.small:
        print(f"diffzoo: data.root={root}: {found.small} of {total} images are smaller than {resolution}x{resolution} "
              "and are upscaled (bicubic)", file=sys.stderr, flush=True)
