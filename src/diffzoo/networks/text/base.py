"""The text-encoder contract: captions → ``TextEncoding(tokens, states, mask, pooled)``.

See the package docstring (``diffzoo.networks.text``) for the shapes and what each field means.
This module holds the contract (:class:`TextEncoding`, :class:`TextEncoder`), the frozen-encoder
behaviour (no gradients, always in eval mode) and the per-caption LRU cache frozen encoders share.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ...errors import ConfigError

__all__ = ["CaptionCache", "FrozenTextEncoder", "TextEncoder", "TextEncoding", "masked_mean"]


class TextEncoding(NamedTuple):
    """What every text encoder returns for a batch of ``B`` captions padded to ``L`` tokens.

    Attributes:
        tokens: int64 ``[B, L]`` token ids (right-padded with the encoder's ``pad_id``).
        states: float ``[B, L, d]`` the last layer's token states.
        mask: bool ``[B, L]``, True on real tokens, False on padding.
        pooled: float ``[B, d]`` one vector per caption (the rule is the encoder's own).
    """

    tokens: torch.Tensor
    states: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``states [B, L, d]`` over the positions where ``mask [B, L]`` is True → ``[B, d]``
    (sentence-transformers' mean pooling; a caption with no real token gives zeros)."""
    m = mask.to(states.dtype)[..., None]
    return (states * m).sum(1) / m.sum(1).clamp_min(1.0)


class TextEncoder(nn.Module):
    """Base class of the text encoders: ``encoder(captions) → TextEncoding``.

    Subclasses set ``dim`` (``d``), ``context_length`` (``L``), ``pad_id`` and ``trainable``, and
    implement :meth:`tokenize` and :meth:`encode_tokens`.
    """

    dim: int
    context_length: int
    pad_id: int
    trainable: bool = True

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        """``B`` captions → int64 ``[B, context_length]`` token ids, right-padded with ``pad_id``."""
        raise NotImplementedError

    def encode_tokens(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> TextEncoding:
        """Encode a pre-tokenised batch ``tokens [B, L]`` (``mask [B, L]``: default ``tokens != pad_id``)."""
        raise NotImplementedError

    def forward(self, captions: Sequence[str]) -> TextEncoding:
        """``B`` captions → :class:`TextEncoding` with ``L = context_length``."""
        return self.encode_tokens(self.tokenize(_as_list(captions)).to(self._device()))

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def _default_mask(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if tokens.ndim != 2:
            raise ValueError(f"{type(self).__name__}: tokens must be [B, L], got {tuple(tokens.shape)}")
        return tokens != self.pad_id if mask is None else mask.bool()


def _as_list(captions: Sequence[str]) -> list[str]:
    if isinstance(captions, str):
        raise TypeError("text encoders take a list of captions, not one string (wrap it: [caption])")
    return list(captions)


class CaptionCache:
    """An LRU dict ``caption → (tokens [n], states [n, d], pooled [d])`` kept on CPU, where ``n`` is
    the caption's own token count (no padding): an entry does not depend on the batch it was
    computed in. ``max_size = 0`` disables it."""

    def __init__(self, max_size: int):
        if max_size < 0:
            raise ConfigError(f"text_encoder.cache_size must be >= 0, got {max_size}")
        self.max_size = max_size
        self._entries: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, caption: str):
        entry = self._entries.get(caption)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(caption)
        return entry

    def put(self, caption: str, tokens: torch.Tensor, states: torch.Tensor, pooled: torch.Tensor) -> None:
        if self.max_size == 0:
            return
        self._entries[caption] = (tokens.detach().cpu(), states.detach().cpu(), pooled.detach().cpu())
        self._entries.move_to_end(caption)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0


class FrozenTextEncoder(TextEncoder):
    """A pretrained encoder that is never trained: its parameters do not require gradients, it stays
    in eval mode whatever ``.train()`` is asked (no dropout), runs under ``no_grad``, writes zeros
    into the states of padding positions and caches its outputs per caption (:class:`CaptionCache`).

    Subclasses implement :meth:`tokenize` and :meth:`_encode` (the network on a padded batch).
    """

    trainable = False

    def __init__(self, cache_size: int = 4096):
        super().__init__()
        self.cache = CaptionCache(cache_size)

    def freeze(self) -> None:
        """Call at the end of a subclass ``__init__``, once the weights are loaded."""
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        return super().train(False)

    def _encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens, mask [B, L]`` → ``(states [B, L, d], pooled [B, d])``."""
        raise NotImplementedError

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> TextEncoding:
        mask = self._default_mask(tokens, mask)
        tokens, mask = tokens.to(self._device()), mask.to(self._device())
        states, pooled = self._encode(tokens, mask)
        states = states * mask[..., None].to(states.dtype)  # padding states are zero, whatever the net wrote
        return TextEncoding(tokens, states, mask, pooled)

    @torch.no_grad()
    def forward(self, captions: Sequence[str]) -> TextEncoding:
        captions = _as_list(captions)
        found = {c: self.cache.get(c) for c in dict.fromkeys(captions)}  # unique captions, first-seen order
        missing = [c for c, entry in found.items() if entry is None]
        if missing:
            enc = self.encode_tokens(self.tokenize(missing))
            for i, caption in enumerate(missing):
                n = int(enc.mask[i].sum())  # right-padded: the real tokens are the first n
                found[caption] = (enc.tokens[i, :n].cpu(), enc.states[i, :n].cpu(), enc.pooled[i].cpu())
                self.cache.put(caption, *found[caption])
        return self._assemble([found[c] for c in captions])

    def _assemble(self, entries) -> TextEncoding:
        """Pad per-caption entries to ``[B, context_length]`` on the encoder's device."""
        device, B, L = self._device(), len(entries), self.context_length
        dtype = entries[0][1].dtype if entries else torch.float32
        tokens = torch.full((B, L), self.pad_id, dtype=torch.long)
        states = torch.zeros(B, L, self.dim, dtype=dtype)
        mask = torch.zeros(B, L, dtype=torch.bool)
        pooled = torch.zeros(B, self.dim, dtype=dtype)
        for i, (tok, st, po) in enumerate(entries):
            n = tok.shape[0]
            tokens[i, :n], states[i, :n], mask[i, :n], pooled[i] = tok, st, True, po
        return TextEncoding(tokens.to(device), states.to(device), mask.to(device), pooled.to(device))
