"""A frozen T5 encoder loaded with transformers from a local folder — Imagen's text encoder
(Saharia et al. 2022, §2.1: a frozen T5-XXL encoder; Raffel et al. 2020 for T5).

Nothing here downloads: ``path`` is a folder written by ``save_pretrained`` (weights, config and
tokenizer files) that a user already has, read with ``local_files_only=True``. transformers is an
optional dependency; without it, or without the folder, construction fails with one line.

Outputs: ``states [B, L, d_model]`` = the encoder's last hidden state, zero on padding (as
imagen-pytorch masks T5 outputs), ``pooled [B, d_model]`` = their mean over real tokens (T5 has no
sentence vector; Imagen's U-Net pools the states itself, §2.5 / App. F.1, attention pooling).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ...errors import CheckpointError, ConfigError
from .base import FrozenTextEncoder, masked_mean

__all__ = ["T5Encoder"]


class T5Encoder(FrozenTextEncoder):
    """A frozen T5 encoder from a local ``save_pretrained`` folder.

    Args:
        path: the folder (``config.json``, weights, tokenizer files).
        context_length: ``L``: captions are tokenised (T5 appends ``</s>``), truncated to ``L`` and
            right-padded (Imagen / imagen-pytorch: 256 / 256 tokens for T5).
        cache_size: captions kept in the per-caption LRU cache (0: none).
    """

    def __init__(self, path: str, context_length: int = 128, cache_size: int = 4096):
        super().__init__(cache_size)
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError:
            raise CheckpointError(
                "the T5 text encoder needs transformers: pip install transformers sentencepiece"
            ) from None
        if path is None or not Path(path, "config.json").is_file():
            raise CheckpointError(f"text_encoder.path={path!r} is not a folder with a T5 config.json (save_pretrained output)")
        if context_length < 1:
            raise ConfigError(f"text_encoder.context_length must be >= 1, got {context_length}")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.t5 = T5EncoderModel.from_pretrained(path, local_files_only=True)
        self.dim, self.context_length = self.t5.config.d_model, context_length
        self.pad_id = self.tokenizer.pad_token_id
        self.freeze()

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(captions), padding="max_length", truncation=True,
                             max_length=self.context_length, return_tensors="pt")
        return enc["input_ids"].long()

    def _encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.t5(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        return states, masked_mean(states, mask)
