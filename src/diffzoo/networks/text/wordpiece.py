"""BERT's uncased WordPiece tokenizer, read from a Hugging Face ``tokenizer.json``.

The steps of BERT's tokenizer (Devlin et al. 2019, §3 and the released ``tokenization.py``;
Wu et al. 2016 for WordPiece), as the ``BertNormalizer`` / ``BertPreTokenizer`` / ``WordPiece``
entries of ``tokenizer.json`` configure them:

1. clean: drop NUL, U+FFFD and control characters; every whitespace character becomes a space;
2. put spaces around CJK ideographs;
3. strip accents (NFD, then drop combining marks, Unicode category Mn) and lower-case — an
   uncased model strips accents whenever it lower-cases and ``strip_accents`` is unset;
4. split on whitespace, and make every punctuation character its own word;
5. WordPiece each word, greedy longest-match-first, continuation pieces prefixed ``##``; a word
   that cannot be covered, or longer than ``max_input_chars_per_word``, becomes ``[UNK]``;
6. ``[CLS] pieces [SEP]``, truncated to the context length, right-padded with ``[PAD]``.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["WordPieceTokenizer"]

# CJK Unified Ideographs blocks and their extensions / compatibility blocks (BERT's
# ``_is_chinese_char``: the code-point ranges below, not all of Unicode's CJK).
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    # every non-alphanumeric printable ASCII character counts ("$", "^", "`" too), plus Unicode P*
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class WordPieceTokenizer:
    """Uncased BERT WordPiece (steps 1–6 of the module docstring).

    Args:
        vocab: token → id.
        lowercase: lower-case and strip accents (uncased models).
        unk, cls, sep, pad: the special tokens' strings.
        prefix: the continuation prefix (``##``).
        max_chars: longer words become ``[UNK]`` (``max_input_chars_per_word``).
    """

    def __init__(self, vocab: dict[str, int], lowercase: bool = True, unk: str = "[UNK]", cls: str = "[CLS]",
                 sep: str = "[SEP]", pad: str = "[PAD]", prefix: str = "##", max_chars: int = 100):
        self.vocab = vocab
        self.lowercase, self.prefix, self.max_chars = lowercase, prefix, max_chars
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (vocab[t] for t in (unk, cls, sep, pad))
        self.unk = unk

    @classmethod
    def from_file(cls, path: str | Path) -> WordPieceTokenizer:
        """Read a ``tokenizer.json`` whose model is WordPiece and whose normaliser is BERT's."""
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        model, norm = spec["model"], spec.get("normalizer") or {}
        if model.get("type") != "WordPiece":
            raise ValueError(f"{path}: expected a WordPiece model, got {model.get('type')!r}")
        lowercase = bool(norm.get("lowercase", True))
        strip = norm.get("strip_accents")
        if strip is not None and bool(strip) != lowercase:
            raise ValueError(f"{path}: strip_accents={strip} with lowercase={lowercase} is not supported")
        return cls(model["vocab"], lowercase=lowercase, unk=model.get("unk_token", "[UNK]"),
                   prefix=model.get("continuing_subword_prefix", "##"),
                   max_chars=int(model.get("max_input_chars_per_word", 100)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def normalize(self, text: str) -> str:
        """Steps 1–3: clean, space CJK, strip accents and lower-case."""
        out = []
        for ch in text:
            if ch == "\0" or ch == "\ufffd" or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif _is_cjk(ch):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out)
        if self.lowercase:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
            text = text.lower()
        return text

    def pre_tokenize(self, text: str) -> list[str]:
        """Step 4: whitespace split, each punctuation character its own word."""
        words = []
        for chunk in text.split():
            word = ""
            for ch in chunk:
                if _is_punctuation(ch):
                    if word:
                        words.append(word)
                    words.append(ch)
                    word = ""
                else:
                    word += ch
            if word:
                words.append(word)
        return words

    def wordpiece(self, word: str) -> list[str]:
        """Step 5: greedy longest-match-first; ``[UNK]`` if some suffix has no piece."""
        if len(word) > self.max_chars:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return [self.unk]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Steps 1–5: a caption → its WordPiece strings (no special tokens)."""
        return [p for w in self.pre_tokenize(self.normalize(text)) for p in self.wordpiece(w)]

    def encode(self, text: str, context_length: int) -> list[int]:
        """``[CLS] ids [SEP]``, the pieces truncated to ``context_length − 2``."""
        ids = [self.vocab.get(p, self.unk_id) for p in self.tokenize(text)][: context_length - 2]
        return [self.cls_id, *ids, self.sep_id]

    def __call__(self, captions: Sequence[str], context_length: int) -> torch.Tensor:
        """``B`` captions → int64 ``[B, context_length]``, right-padded with ``pad_id``."""
        out = torch.full((len(captions), context_length), self.pad_id, dtype=torch.long)
        for i, caption in enumerate(captions):
            ids = self.encode(caption, context_length)
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out
