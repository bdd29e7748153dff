"""Captions as a component: phrase templates, seeded choice, a word-level tokenizer, caption dropout.

A caption data set describes each image by a dict of integer **attributes** (``{"class": 7,
"bold": 1}``, ``{"color_a": 0, "shape_a": 2, …}``). A :class:`CaptionGrammar` turns attributes into
text in two disjoint registers:

* ``"train"``: the phrasings a model is trained on;
* ``"heldout"``: paraphrases never used in training (other templates and other words), for
  evaluating whether a text encoder generalises beyond the training phrasings.

Which phrasing an item gets is a function of ``(seed, stream, index)`` only (:func:`hashed_index`):
no random-number state, so a split's captions are the same on every machine and every run.

The **empty caption** ``""`` is the unconditional input (classifier-free guidance drops captions
to it: Ho & Salimans 2022 Alg. 1 line 3 with ∅ = ``""``, as GLIDE §3.1 and Imagen §2.3 do).
Caption dropout is done by the LightningModule, seeded per step like its label dropout
(:func:`drop_captions` is the helper); the data stay a pure function of the index.

:class:`WordTokenizer` is a lower-cased word-level tokenizer whose vocabulary is the words of the
*training* phrasings only, so held-out words map to ``unk`` — a scratch text encoder can be trained
without any download. Pretrained encoders bring their own tokenizers; batches carry the raw text too.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import string
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError

__all__ = [
    "EMPTY_CAPTION",
    "REGISTERS",
    "Attributes",
    "CaptionGrammar",
    "TemplateGrammar",
    "WordTokenizer",
    "PromptSet",
    "hashed_index",
    "hashed_uniform",
    "split_words",
    "join_words",
    "with_article",
    "drop_captions",
]

EMPTY_CAPTION = ""  # the unconditional input (CFG's ∅)
REGISTERS = ("train", "heldout")  # training phrasings / held-out paraphrases

Attributes = Mapping[str, int]

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|[^\sa-z0-9]")
_NO_SPACE_BEFORE = frozenset(",.;:!?")
_FORMATTER = string.Formatter()


def split_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words and punctuation marks: ``"A bold 7, thin."`` →
    ``["a", "bold", "7", ",", "thin", "."]`` (hyphenated words stay whole: ``"t-shirt"``)."""
    return _WORD.findall(text.lower())


def join_words(words: Sequence[str]) -> str:
    """Inverse of :func:`split_words` on canonical text: words joined by one space, no space
    before ``, . ; : ! ?``."""
    out = ""
    for w in words:
        out += w if (not out or w in _NO_SPACE_BEFORE) else " " + w
    return out


def with_article(phrase: str) -> str:
    """``"a " + phrase`` or ``"an " + phrase`` by the first letter (``"an ankle boot"``)."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


# ---------------------------------------------------------------- seeded choice without RNG state
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _key(*parts) -> np.uint64:
    text = "/".join(str(p) for p in parts).encode()
    return np.uint64(int.from_bytes(hashlib.sha256(text).digest()[:8], "little"))


def _splitmix64(z: np.ndarray) -> np.ndarray:
    # SplitMix64's output function (Steele, Lea & Flood 2014, "Fast splittable pseudorandom
    # number generators"): a bijective 64-bit mix, so distinct counters give distinct outputs.
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hashed_uniform(seed: int, stream: str, index, draw: int = 0) -> np.ndarray:
    """Uniform numbers in ``[0, 1)``, float64 shaped like ``index``: number ``draw`` of item
    ``index`` in ``stream``, a function of ``(seed, stream, index, draw)`` only (a counter-based
    generator: SplitMix64 of the counter ``key(seed, stream, draw) + index·φ``)."""
    idx = np.asarray(index, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix64(idx * np.uint64(0x9E3779B97F4A7C15) + _key(seed, stream, draw))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def hashed_index(seed: int, stream: str, index, n: int, draw: int = 0) -> np.ndarray:
    """Integers uniform on ``{0, …, n−1}``, int64 shaped like ``index`` (see :func:`hashed_uniform`)."""
    return np.minimum((hashed_uniform(seed, stream, index, draw) * n).astype(np.int64), n - 1)


# ---------------------------------------------------------------- grammars
class CaptionGrammar:
    """Attributes → captions, in the two registers of :data:`REGISTERS`.

    Subclasses implement :meth:`phrasings`. ``attribute_values`` maps every attribute name to the
    names of its values (value ``k`` of attribute ``a`` is ``attribute_values[a][k]``; ``-1``
    means "does not apply", e.g. the second shape of a one-shape image).
    """

    attribute_values: Mapping[str, tuple[str, ...]]

    def phrasings(self, attributes: Attributes, register: str) -> list[str]:
        """Every caption of ``register`` that describes ``attributes`` (a fixed order, no duplicates)."""
        raise NotImplementedError

    def caption(self, attributes: Attributes, register: str, seed: int, stream: str, index: int) -> str:
        """One phrasing, chosen by ``(seed, stream, index)``: uniform over :meth:`phrasings`."""
        options = self.phrasings(attributes, register)
        return options[int(hashed_index(seed, f"caption/{register}/{stream}", index, len(options)))]

    def captions(self, attributes: Mapping[str, np.ndarray], register: str, seed: int, stream: str) -> list[str]:
        """Captions of items ``0 … N−1`` whose attributes are the columns ``attributes[a]`` ``[N]``."""
        names = list(attributes)
        cols = [np.asarray(attributes[a]).tolist() for a in names]
        n = len(cols[0]) if cols else 0
        cache: dict[tuple, list[str]] = {}
        picks = hashed_uniform(seed, f"caption/{register}/{stream}", np.arange(n))
        out = []
        for i in range(n):
            key = tuple(c[i] for c in cols)
            if key not in cache:
                cache[key] = self.phrasings(dict(zip(names, key)), register)
            options = cache[key]
            out.append(options[min(int(picks[i] * len(options)), len(options) - 1)])
        return out

    def combinations(self) -> Iterable[dict[str, int]]:
        """Attribute combinations that together use every word of every register (for the vocabulary)."""
        names = list(self.attribute_values)
        for values in itertools.product(*(range(len(self.attribute_values[a])) for a in names)):
            yield dict(zip(names, values))

    def vocabulary(self, register: str = "train") -> list[str]:
        """Sorted distinct words of every phrasing of ``register``."""
        words = set()
        for attrs in self.combinations():
            for text in self.phrasings(attrs, register):
                words.update(split_words(text))
        return sorted(words)


@dataclass(frozen=True)
class TemplateGrammar(CaptionGrammar):
    """Captions from ``str.format`` templates whose fields are phrased from the attributes.

    Args:
        attribute_values: attribute name → value names (the closed set of each attribute).
        templates: register → templates, e.g. ``{"train": ("a {bold} digit {number}",), …}``.
        fields: field name → ``fn(attributes, register) -> alternatives`` (a field may have several
            phrasings: ``number`` → ``["seven", "7"]``); every combination of alternatives is a phrasing.
    """

    attribute_values: Mapping[str, tuple[str, ...]]
    templates: Mapping[str, tuple[str, ...]]
    fields: Mapping[str, Callable[[Attributes, str], Sequence[str]]] = field(default_factory=dict)

    def phrasings(self, attributes: Attributes, register: str) -> list[str]:
        if register not in REGISTERS:
            raise ConfigError(f"caption register {register!r} is not one of {list(REGISTERS)}")
        out: list[str] = []
        for template in self.templates[register]:
            names = [n for _, n, _, _ in _FORMATTER.parse(template) if n]
            for choice in itertools.product(*(self.fields[n](attributes, register) for n in names)):
                text = template.format(**dict(zip(names, choice)))
                if text not in out:
                    out.append(text)
        return out


# ---------------------------------------------------------------- tokenizer
class WordTokenizer:
    """Word-level tokenizer with a fixed context length.

    ids: ``pad = 0``, ``unk = 1``, ``bos = 2``, ``eos = 3``, then the vocabulary in order.
    ``encode(text)`` = ``[bos, w₁, …, w_n, eos, pad, …]`` cut / right-padded to ``context_length``
    (a caption longer than the context keeps its first ``L − 2`` words and still ends in ``eos``).
    The empty caption is ``[bos, eos, pad, …]``. Words outside the vocabulary become ``unk``.

    Args:
        vocabulary: the known words (distinct strings).
        context_length: ``L``, the length of every token row (≥ 2).
    """

    PAD, UNK, BOS, EOS = 0, 1, 2, 3
    SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")

    def __init__(self, vocabulary: Sequence[str], context_length: int = 16):
        if context_length < 2:
            raise ConfigError(f"data.context_length must be >= 2 (bos + eos), got {context_length}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("WordTokenizer: the vocabulary has duplicate words")
        self.words = list(self.SPECIALS) + list(vocabulary)
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.context_length = int(context_length)

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(self.words)

    def encode(self, texts: Sequence[str] | str) -> torch.Tensor:
        """Captions (a list of ``B`` strings, or one string) → int64 ``[B, L]`` (``[L]`` for one string)."""
        single = isinstance(texts, str)
        rows = []
        for text in [texts] if single else texts:
            ids = [self.ids.get(w, self.UNK) for w in split_words(text)][: self.context_length - 2]
            ids = [self.BOS, *ids, self.EOS]
            rows.append(ids + [self.PAD] * (self.context_length - len(ids)))
        out = torch.tensor(rows, dtype=torch.long).reshape(len(rows), self.context_length)
        return out[0] if single else out

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """int64 ``[B, L]`` → the ``B`` captions (unknown words as ``<unk>``, specials dropped)."""
        out = []
        for row in torch.as_tensor(tokens).reshape(-1, self.context_length).tolist():
            words = [self.words[i] for i in row if i not in (self.PAD, self.BOS, self.EOS)]
            out.append(join_words(words))
        return out

    def mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """bool ``[B, L]``: True at real tokens (bos, words, eos), False at padding."""
        return tokens != self.PAD

    def state(self) -> dict:
        """``{"vocabulary", "context_length"}``, enough to rebuild it (``WordTokenizer(**state)``)."""
        return {"vocabulary": self.words[len(self.SPECIALS):], "context_length": self.context_length}


# ---------------------------------------------------------------- prompt sets and caption dropout
@dataclass
class PromptSet:
    """Prompts for sampling / evaluation: ``text`` (``P`` strings), ``tokens`` int64 ``[P, L]``,
    ``attributes`` (name → int64 ``[P]``, ``-1`` = does not apply) and ``y`` int64 ``[P]``
    (the class, where the data set has one; else ``None``)."""

    text: list[str]
    tokens: torch.Tensor
    attributes: dict[str, torch.Tensor]
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.text)


def drop_captions(text: Sequence[str], tokens: torch.Tensor, drop: torch.Tensor, empty_tokens: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """Replace the captions where ``drop`` (bool ``[B]``) is set by the empty caption (CFG's ∅;
    Ho & Salimans 2022 Alg. 1 line 3). ``tokens`` int64 ``[B, L]``; ``empty_tokens`` ``[L]`` is the
    tokenizer's encoding of ``""``. Returns the new text and tokens (inputs untouched). The caller
    draws ``drop`` from its per-step generator, as ``DiffusionModule`` draws its label dropout."""
    drop_list = drop.tolist()
    new_text = [EMPTY_CAPTION if d else t for t, d in zip(text, drop_list)]
    new_tokens = torch.where(drop.to(tokens.device)[:, None], empty_tokens.to(tokens.device)[None], tokens)
    return new_text, new_tokens
