"""Any image file as 8-bit RGB or grey pixels, by stated rules, and a check of a whole list of files.

The rules, in the order they apply:

* **Orientation**: the EXIF ``Orientation`` tag is applied (the pixels as a viewer shows them); an
  unreadable EXIF block leaves the stored orientation.
* **Bit depth**: 16-bit grey (PIL modes ``I;16*``; ``I``, clipped to [0, 65535]) is scaled to 8 bits
  as ``round(v · 255 / 65535)``; 32-bit float grey (``F``) is read as [0, 1], clipped, times 255.
  PIL itself reads 16-bit RGB(A) PNGs at their high byte (``v >> 8``, within 1 of the same scaling).
* **Transparency**: an image with an alpha channel or a transparent palette entry is composited over
  a white background, ``out = (c · a + 255 · (255 − a)) / 255`` rounded (what a viewer shows on a
  white page); fully transparent pixels become white whatever colour they store.
* **Colour**: palette, bilevel, CMYK, YCbCr, … convert to RGB; ``channels=1`` takes PIL's luma
  (ITU-R 601-2: ``L = 0.299 R + 0.587 G + 0.114 B``), ``channels=3`` replicates a grey image.
* **Size**: the shorter side is resized to the resolution (bicubic, antialiased; images smaller than
  the resolution are upscaled) and the centre square is cropped.

A file that cannot be decoded in full (not an image, truncated, empty, a decoder error) is *bad*:
:func:`diffzoo.data.image_check.check_images` finds them all before training, so that a run never
meets one mid-way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["BAD_IMAGE_RULES", "decode_image", "describe_error", "fit_square", "load_image"]

BAD_IMAGE_RULES = ("skip", "error")  # data.on_bad_image
_MODES = {1: "L", 3: "RGB"}
_WHITE = 255  # the background transparent pixels are composited over
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ORIENTATION_TAG = 0x0112  # EXIF 2.3, tag 274


def _apply_orientation(im):
    """The pixels as displayed: PIL's transpose for EXIF orientations 2-8 (EXIF 2.3, tag 274)."""
    from PIL import ImageOps

    try:
        if im.getexif().get(_ORIENTATION_TAG, 1) in (1, None):
            return im
        return ImageOps.exif_transpose(im)
    except Exception:  # a corrupt EXIF block: keep the stored orientation (the pixels are fine)
        return im


def _to_eight_bit(im):
    """16-bit / 32-bit grey → 8-bit ``L`` by the module's scaling rule; other modes unchanged."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT:
        v = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), mode="L")  # round(v·255/65535)
    if im.mode == "F":
        v = np.clip(np.asarray(im, dtype=np.float64), 0.0, 1.0)
        return Image.fromarray(np.rint(v * 255).astype(np.uint8), mode="L")
    return im


def _flatten_alpha(im):
    """Composite an image with transparency over white (``RGB``); others unchanged."""
    from PIL import Image

    if not (im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or im.has_transparency_data):
        return im
    rgba = np.asarray(im.convert("RGBA"), dtype=np.int64)
    c, a = rgba[..., :3], rgba[..., 3:]
    # "over" compositing (Porter & Duff 1984) on an opaque white background, rounded to nearest
    out = (c * a + _WHITE * (255 - a) + 127) // 255
    return Image.fromarray(out.astype(np.uint8), mode="RGB")


def decode_image(path: str | Path, channels: int = 3):
    """Decode ``path`` in full by the module's rules: a PIL image of mode ``RGB`` (``channels=3``) or
    ``L`` (``channels=1``), displayed orientation. Raises whatever PIL raises on a bad file."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decode every byte now: a truncated file fails here, not later
        im = _apply_orientation(im)
        im = _flatten_alpha(_to_eight_bit(im))
        return im.convert(_MODES[channels])


def fit_square(im, resolution: int) -> torch.Tensor:
    """Resize the shorter side of a PIL image to ``resolution`` (bicubic) and crop the centre square:
    uint8 ``[C, resolution, resolution]`` (C = 1 for ``L``, 3 for ``RGB``)."""
    from PIL import Image

    w, h = im.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    if size != (w, h):
        im = im.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    im = im.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(im, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_image(path: str | Path, resolution: int, channels: int = 3) -> torch.Tensor:
    """:func:`decode_image` then :func:`fit_square`: uint8 ``[channels, resolution, resolution]``."""
    return fit_square(decode_image(path, channels), resolution)


def describe_error(e: BaseException, path: str | Path = "") -> str:
    """A short, one-line reason without the file's own name: ``cannot identify image file``,
    ``image file is truncated``, …"""
    text = (str(e).splitlines() or [""])[0]
    for name in (repr(str(path)), str(path)) if str(path) else ():
        text = text.replace(name, "")
    return (text.strip(" :") or type(e).__name__)[:80]
