"""Text encoders: one interface from captions to what a text-conditional U-Net attends to.

``encoder(captions: list[str]) → TextEncoding(tokens, states, mask, pooled)`` for ``B`` captions:

================  =================  ==========================================================
field             shape / dtype      meaning
================  =================  ==========================================================
``tokens``        ``[B, L]`` int64   token ids, right-padded with ``encoder.pad_id``
``states``        ``[B, L, d]``      the last layer's token states (the attention context)
``mask``          ``[B, L]`` bool    True on real tokens, False on padding
``pooled``        ``[B, d]``         one vector per caption (added to the time embedding)
================  =================  ==========================================================

Every encoder has ``dim`` (``d``), ``context_length`` (``L``), ``pad_id``, ``trainable``,
``tokenize(captions) → [B, L]`` and ``encode_tokens(tokens [B, L], mask=None)`` for batches that
arrive tokenised (the captioned data sets put tokens in their batches). States and pooled come on
the encoder's device.

* :class:`GlideTextTransformer` (``trainable = True``): GLIDE's jointly trained, **unmasked**
  Transformer with learned padding embeddings, tokenised by the captioned data sets' word-level
  tokenizer (``diffzoo.data.captions.WordTokenizer``; GLIDE's BPE is not available offline);
  ``pooled = states[:, L − 1]``, the last *padded* position, as the released code reads it. Its padding states are real states, and GLIDE's U-Net
  attends to all ``L`` positions; the projections to the time embedding and to every attention
  layer's keys / values are the U-Net's.
* :class:`MiniLMEncoder` and :class:`T5Encoder` (``trainable = False``, Imagen's frozen encoder):
  no gradients, always in eval mode, run under ``no_grad``; states are **zero on padding** and the
  consumer should mask them (Imagen's cross-attention); outputs are cached per caption on CPU.
  MiniLM's ``pooled`` is its sentence embedding (mean of real tokens, L2-normalised); T5's the
  mean of real tokens.

A frozen encoder's outputs do not depend on the batch a caption comes in (attention is masked on
padding), so an experiment may precompute them once per caption.
"""

from .base import (
    CaptionCache,
    FrozenTextEncoder,
    TextEncoder,
    TextEncoding,
    masked_mean,
)
from .bert import BertEncoder, bert_state_dict
from .glide import GlideTextTransformer, Tokenizer
from .minilm import MINILM_SHA256, MiniLMEncoder, minilm_dir, verify_sha256
from .t5 import T5Encoder
from .wordpiece import WordPieceTokenizer

__all__ = [
    "MINILM_SHA256",
    "BertEncoder",
    "CaptionCache",
    "FrozenTextEncoder",
    "GlideTextTransformer",
    "MiniLMEncoder",
    "T5Encoder",
    "TextEncoder",
    "TextEncoding",
    "Tokenizer",
    "WordPieceTokenizer",
    "bert_state_dict",
    "masked_mean",
    "minilm_dir",
    "verify_sha256",
]
