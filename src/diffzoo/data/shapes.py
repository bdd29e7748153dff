"""``shapes``: a procedural compositional data set of one or two coloured shapes, with captions.

Each image (RGB, ``S × S``, 16 by default) holds one shape, or two shapes side by side or one above
the other, on a black background. A *scene* is a function of ``(seed, stream, index)`` only
(counter-based draws, :func:`~diffzoo.data.captions.hashed_uniform`), and so is its render.

Attributes (int64, ``-1`` = does not apply — the second shape of a one-shape scene):

* ``count``: 0 = one shape, 1 = two;
* ``color_a`` / ``color_b`` ∈ red, green, blue, yellow; ``shape_a`` / ``shape_b`` ∈ circle, square,
  triangle; ``size_a`` / ``size_b`` ∈ small, large;
* ``relation``: 0 = *a left of b*, 1 = *a above b*. Slot ``a`` is always the left (or upper) shape,
  so every label is a function of the pixels; the captions say it either way round ("a red circle
  to the left of a blue square" or "a blue square to the right of a red circle").

**Held-out compositions.** ``heldout`` lists colour–shape pairs ("red triangle") that never occur
in the training or validation split, in either slot; ``eval_set("heldout")`` / ``prompts("heldout")``
draw scenes where at least one slot holds such a pair.

**Rendering** (:func:`render_scenes`): anti-aliased by ``supersample × supersample`` point sampling
per pixel and a box filter (the mean), shapes painted over the background by their coverage.
A shape of size radius ``r`` (``RADII``, a fraction of the side) is a disc of radius ``r``, a square
of half-side ``0.85 r`` or an upward equilateral triangle of circumradius ``1.2 r`` around its centre;
all fit in a disc of radius ``1.2 r``, which placement keeps inside the canvas (or its half).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import DataSplits
from .captioned import CaptionedDataModule, CaptionedDataset
from .captions import CaptionGrammar, hashed_index, hashed_uniform

__all__ = [
    "COLORS", "COLOR_RGB", "SHAPES", "SIZES", "RELATIONS", "SHAPES_ATTRIBUTES", "RADII",
    "SHAPES_GRAMMAR", "ShapesGrammar", "ShapesDataModule", "sample_scenes", "render_scenes", "parse_heldout",
]

COLORS = ("red", "green", "blue", "yellow")
COLOR_RGB = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0))
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
RELATIONS = ("left of", "above")
SHAPES_ATTRIBUTES = {
    "count": ("one", "two"),
    "color_a": COLORS, "shape_a": SHAPES, "size_a": SIZES,
    "color_b": COLORS, "shape_b": SHAPES, "size_b": SIZES,
    "relation": RELATIONS,
}
RADII = (0.14, 0.2)  # small, large: size radius r as a fraction of the side
EXTENT = 1.2  # every shape lies in the disc of radius 1.2 r (triangle circumradius, square corner 0.85·√2 ≈ 1.2)
SQUARE_HALF = 0.85
MARGIN = 0.02  # free border between a shape and the canvas (or half-canvas) edge
ACROSS_JITTER = 0.08  # two shapes: largest offset of each from their common line across the relation's axis
SCENE_MODES = ("exclude", "require", "any")  # held-out pairs: never / at least once / don't care
_SLOT_KEYS = ("color", "shape", "size")
_MAX_ATTEMPTS = 64


def parse_heldout(pairs: Sequence[str]) -> frozenset[tuple[int, int]]:
    """``["red triangle", …]`` → ``{(colour id, shape id), …}``; a bad entry is a ``ConfigError``
    naming ``data.heldout`` and the valid colours and shapes."""
    out = set()
    for pair in pairs:
        words = str(pair).split()
        if len(words) != 2 or words[0] not in COLORS or words[1] not in SHAPES:
            raise ConfigError(f"data.heldout entry {pair!r} must be '<colour> <shape>' with colour in {list(COLORS)} "
                              f"and shape in {list(SHAPES)}")
        out.add((COLORS.index(words[0]), SHAPES.index(words[1])))
    return frozenset(out)


def _draw(seed: int, stream: str, idx: np.ndarray, attempt: int) -> dict[str, np.ndarray]:
    """One proposal per index: attributes and centres (draw numbers offset by the attempt)."""
    def u(k):
        return hashed_uniform(seed, stream, idx, 16 * attempt + k)

    def pick(k, n):
        return hashed_index(seed, stream, idx, n, 16 * attempt + k)

    s = {"count": pick(0, 2), "relation": pick(7, 2)}
    for slot, base in (("a", 1), ("b", 4)):
        s[f"color_{slot}"], s[f"shape_{slot}"], s[f"size_{slot}"] = pick(base, 4), pick(base + 1, 3), pick(base + 2, 2)
    ea, eb = (EXTENT * np.asarray(RADII)[s[f"size_{k}"]] for k in "ab")
    two = s["count"] == 1
    # one shape: centre uniform in [e + m, 1 − e − m]² ; two: each in its half along the relation's axis
    along_a = np.where(two, _span(u(8), 0.0, 0.5, ea), _span(u(8), 0.0, 1.0, ea))
    along_b = _span(u(9), 0.5, 1.0, eb)
    # across the relation's axis, two shapes stay near a common line (offsets ≤ ACROSS_JITTER) so that
    # the relation is the dominant axis: |Δ across| ≤ 2·0.08 < |Δ along| (≥ 0.37 with these RADII)
    line = 0.3 + 0.4 * u(12)
    near_a = np.clip(line + ACROSS_JITTER * (2 * u(10) - 1), ea + MARGIN, 1 - ea - MARGIN)
    across_a = np.where(two, near_a, _span(u(10), 0.0, 1.0, ea))
    across_b = np.clip(line + ACROSS_JITTER * (2 * u(11) - 1), eb + MARGIN, 1 - eb - MARGIN)
    vertical = s["relation"] == 1
    s["cx_a"], s["cy_a"] = np.where(vertical & two, across_a, along_a), np.where(vertical & two, along_a, across_a)
    s["cx_b"], s["cy_b"] = np.where(vertical, across_b, along_b), np.where(vertical, along_b, across_b)
    for key in ("color_b", "shape_b", "size_b", "relation"):
        s[key] = np.where(two, s[key], -1)
    return s


def _span(u: np.ndarray, lo: float, hi: float, extent: np.ndarray) -> np.ndarray:
    return lo + extent + MARGIN + u * np.maximum(hi - lo - 2 * (extent + MARGIN), 0.0)


def _has_heldout(s: dict[str, np.ndarray], heldout: frozenset[tuple[int, int]]) -> np.ndarray:
    hit = np.zeros(len(s["count"]), dtype=bool)
    for c, k in heldout:
        hit |= (s["color_a"] == c) & (s["shape_a"] == k)
        hit |= (s["color_b"] == c) & (s["shape_b"] == k)
    return hit


def sample_scenes(seed: int, stream: str, indices, heldout: frozenset[tuple[int, int]] = frozenset(), mode: str = "any") -> dict[str, np.ndarray]:
    """Scenes ``indices`` of ``stream``: attributes (module docstring) and centres ``cx_*, cy_*``
    (fractions of the side), each a ``[N]`` array, a function of ``(seed, stream, index)``.

    ``mode``: ``"exclude"`` (no slot holds a ``heldout`` pair), ``"require"`` (at least one does)
    or ``"any"``; by rejection, proposal ``k`` of an index using its own draws."""
    if mode not in SCENE_MODES:
        raise ConfigError(f"scene mode {mode!r} is not one of {list(SCENE_MODES)}")
    if mode == "require" and not heldout:
        raise ConfigError("data.heldout is empty: there are no held-out compositions to draw")
    idx = np.asarray(indices, dtype=np.int64)
    scenes = _draw(seed, stream, idx, 0)
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        if mode == "any":
            break
        bad = _has_heldout(scenes, heldout) if mode == "exclude" else ~_has_heldout(scenes, heldout)
        if not bad.any():
            break
        if attempt == _MAX_ATTEMPTS:
            raise RuntimeError(f"sample_scenes: no {mode!r} scene after {_MAX_ATTEMPTS} proposals (held-out pairs {sorted(heldout)})")
        redo = _draw(seed, stream, idx[bad], attempt)
        for key in scenes:
            scenes[key][bad] = redo[key]
    return scenes


def _coverage(shape: int, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Point-sampled masks ``[N, P, P]`` (bool) of ``N`` shapes of one kind at the sample points
    ``pts`` ``[P]`` (both axes; y points down). ``cx, cy, r`` ``[N]``."""
    dx, dy = pts[None, None, :] - cx[:, None, None], pts[None, :, None] - cy[:, None, None]
    r = r[:, None, None]
    if shape == 0:  # disc of radius r
        return dx.square() + dy.square() <= r.square()
    if shape == 1:  # axis-aligned square of half-side 0.85 r
        return torch.maximum(dx.abs(), dy.abs()) <= SQUARE_HALF * r
    # upward equilateral triangle, circumradius R = 1.2 r, centroid at the centre: base y = R/2,
    # sides through the apex (0, −R) with slopes ±√3 → inside: dy ≥ √3|dx| − R and dy ≤ R/2
    R = EXTENT * r
    return (dy <= R / 2) & (dy >= math.sqrt(3) * dx.abs() - R)


def render_scenes(scenes: dict[str, np.ndarray], image_size: int = 16, supersample: int = 4, chunk: int = 2048) -> torch.Tensor:
    """Render scenes (:func:`sample_scenes`) as uint8 ``[N, 3, S, S]`` (``S = image_size``):
    each pixel is the mean of ``supersample²`` point samples at sub-pixel centres (float64
    geometry), shape ``a`` then ``b`` painted over black by their coverage ``c``
    (``img ← (1 − c)·img + c·rgb``), then rounded to bytes."""
    n, P = len(scenes["count"]), image_size * supersample
    pts = (torch.arange(P, dtype=torch.float64) + 0.5) / P
    rgb = torch.tensor(COLOR_RGB, dtype=torch.float32)
    radii = torch.tensor(RADII, dtype=torch.float64)
    col = {k: torch.as_tensor(np.asarray(v)) for k, v in scenes.items()}
    out = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        img = torch.zeros(part.stop - start, 3, image_size, image_size)
        for slot in "ab":
            color, kind = col[f"color_{slot}"][part], col[f"shape_{slot}"][part]
            cover = torch.zeros(len(color), 1, image_size, image_size)
            for k in range(len(SHAPES)):
                rows = ((color >= 0) & (kind == k)).nonzero().squeeze(1)
                if len(rows):
                    mask = _coverage(k, col[f"cx_{slot}"][part][rows], col[f"cy_{slot}"][part][rows],
                                     radii[col[f"size_{slot}"][part][rows]], pts)
                    cover[rows] = F.avg_pool2d(mask[:, None].float(), supersample)  # box filter
            paint = rgb[color.clamp_min(0)][:, :, None, None]
            img = (1 - cover) * img + cover * paint
        out[part] = (img * 255).round().clamp(0, 255).to(torch.uint8)
    return out


class ShapesGrammar(CaptionGrammar):
    """Captions of shape scenes: "a small red circle", "a large blue square above a small green
    triangle" (or the same relation read from the other shape: "… below …"). Both registers use
    these phrasings: what is held out in ``shapes`` is attribute compositions, not words."""

    attribute_values = SHAPES_ATTRIBUTES
    _RELATION_WORDS = (("to the left of", "to the right of"), ("above", "below"))

    def phrasings(self, attributes, register: str) -> list[str]:
        def noun(slot):
            return " ".join(SHAPES_ATTRIBUTES[f"{k}_{slot}"][attributes[f"{k}_{slot}"]] for k in ("size", "color", "shape"))

        a = noun("a")
        if attributes["count"] == 0:
            return [f"a {a}", f"one {a}", f"a picture of a {a}"]
        b = noun("b")
        rel, rev = self._RELATION_WORDS[attributes["relation"]]
        return [f"a {a} {rel} a {b}", f"a {b} {rev} a {a}", f"a picture of a {a} {rel} a {b}", f"a picture of a {b} {rev} a {a}"]

    def combinations(self):
        for attrs in super().combinations():
            if attrs["count"] == 0:
                if attrs["color_b"] == attrs["shape_b"] == attrs["size_b"] == attrs["relation"] == 0:
                    yield attrs
            else:
                yield attrs


SHAPES_GRAMMAR = ShapesGrammar()


class ShapesDataModule(CaptionedDataModule):
    """Rendered shape scenes with captions (module docstring); no class label (``num_classes=None``).

    Args:
        image_size: side ``S`` of the RGB images (16 by default; 32 for a larger U-Net).
        n_train, n_val: scenes in the training and validation splits (streams ``"train"``, ``"val"``).
        heldout: colour–shape pairs held out of both splits (``["red triangle", …]``).
        render_seed: seed of the scenes.
        supersample: anti-aliasing: point samples per pixel side (1 = aliased).
        context_length, caption_seed: as :class:`CaptionedDataModule`.
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of ``DiffusionDataModule``.

    ``eval_set("heldout")``: ``n_val`` scenes with a held-out pair (stream ``"heldout"``);
    ``prompts(which, n, seed)``: scenes of stream ``prompts/<which>`` drawn with ``seed``.
    """

    grammar = SHAPES_GRAMMAR

    def __init__(self, image_size: int = 16, n_train: int = 20000, n_val: int = 1000, heldout: Sequence[str] = ("red triangle", "blue circle"),
                 render_seed: int = 0, supersample: int = 4, context_length: int = 20, caption_seed: int = 0, **loader):
        super().__init__(context_length=context_length, caption_seed=caption_seed, **loader)
        if image_size < 8:
            raise ConfigError(f"data.image_size must be >= 8 for shapes, got {image_size}")
        if supersample < 1:
            raise ConfigError(f"data.supersample must be >= 1, got {supersample}")
        if n_train <= 0 or n_val < 0:
            raise ConfigError(f"data.n_train must be > 0 and data.n_val >= 0, got {n_train}, {n_val}")
        self.heldout = parse_heldout(heldout)
        self.name = "shapes"
        self.image_size, self.n_train, self.n_val = int(image_size), int(n_train), int(n_val)
        self.render_seed, self.supersample = int(render_seed), int(supersample)
        self.data_shape = (3, self.image_size, self.image_size)
        self.num_classes = None

    def scenes(self, stream: str, n: int, mode: str, seed: int | None = None) -> dict[str, np.ndarray]:
        """Scenes ``0 … n−1`` of ``stream`` (``mode`` as :func:`sample_scenes`, this module's held-out pairs)."""
        return sample_scenes(self.render_seed if seed is None else seed, stream, np.arange(n), self.heldout, mode)

    def _dataset(self, stream: str, n: int, mode: str) -> CaptionedDataset:
        s = self.scenes(stream, n, mode)
        attrs = {k: s[k] for k in SHAPES_ATTRIBUTES}
        text = self.grammar.captions(attrs, "train", self.caption_seed, stream)
        return CaptionedDataset(render_scenes(s, self.image_size, self.supersample), None, attrs, text, self.tokenizer)

    def load_splits(self) -> DataSplits:
        return DataSplits(self._dataset("train", self.n_train, "exclude"), self._dataset("val", self.n_val, "exclude"))

    def _eval_dataset(self, which: str) -> CaptionedDataset:
        return self.val_set if which == "train" else self._dataset("heldout", self.n_val, "require")

    def _prompt_attributes(self, which: str, n: int, seed: int) -> dict[str, np.ndarray]:
        s = self.scenes(f"prompts/{which}", n, "exclude" if which == "train" else "require", seed)
        return {k: s[k] for k in SHAPES_ATTRIBUTES}
