"""The caption data-module contract: images with text, tokens and attribute labels.

Every caption data module yields batches

    {"x": float32 [B, C, H, W] in [-1, 1],
     "y": int64 [B]                       (the class, only where the data set has classes),
     "text": list[str] (B captions),
     "tokens": int64 [B, L]               (WordTokenizer ids, L = data.context_length),
     "attributes": {name: int64 [B]}      (one tensor per attribute, -1 = does not apply)}

Attributes are a dict of ``[B]`` tensors (not one ``[B, K]`` tensor) so that each is addressed by
its name; ``datamodule.attribute_values[name]`` lists the names of its values. Captions are fixed
per item (a function of ``(caption_seed, split, index)``) and never dropped here: caption dropout
for classifier-free guidance is the LightningModule's, seeded per step
(:func:`~diffzoo.data.captions.drop_captions`), as ``DiffusionModule`` drops labels.

Besides the training and validation splits (both captioned with the *training* phrasings), a
caption module gives, for evaluation:

* :meth:`CaptionedDataModule.prompts` — ``n`` prompts of the training register or the held-out one
  (held-out paraphrases; for ``shapes`` held-out attribute compositions);
* :meth:`CaptionedDataModule.eval_set` — real images captioned in either register (FID references,
  classifier checks).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .base import Batch, DataSplits, DiffusionDataModule, InMemoryDataset
from .captions import REGISTERS, CaptionGrammar, PromptSet, WordTokenizer

__all__ = ["CaptionedDataset", "CaptionedDataModule", "ClassAttributeDataModule"]


class CaptionedDataset(InMemoryDataset):
    """Images with captions, tokens and attributes, fetched a whole batch at a time.

    Args:
        x: ``[N, C, H, W]`` uint8 (mapped to ``[-1, 1]`` on fetch) or float in ``[-1, 1]``.
        y: optional int ``[N]`` class labels.
        attributes: name → int ``[N]``.
        text: the ``N`` captions.
        tokenizer: encodes ``text`` once, into ``tokens`` int64 ``[N, L]``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, attributes: Mapping[str, torch.Tensor], text: Sequence[str], tokenizer: WordTokenizer):
        super().__init__(x, y)
        if len(text) != len(x) or any(len(v) != len(x) for v in attributes.values()):
            raise ValueError(f"CaptionedDataset: {len(x)} images but {len(text)} captions / attribute lengths "
                             f"{ {k: len(v) for k, v in attributes.items()} }")
        self.text = list(text)
        self.attributes = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in attributes.items()}
        self.tokens = tokenizer.encode(self.text) if self.text else torch.zeros(0, tokenizer.context_length, dtype=torch.long)

    def __getitem__(self, i: int) -> Batch:
        item = super().__getitem__(i)
        item.update(text=self.text[i], tokens=self.tokens[i], attributes={k: v[i] for k, v in self.attributes.items()})
        return item

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        batch = super().__getitems__(indices)
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch.update(
            text=[self.text[int(i)] for i in idx],
            tokens=self.tokens[idx],
            attributes={k: v[idx] for k, v in self.attributes.items()},
        )
        return batch


class CaptionedDataModule(DiffusionDataModule):
    """Base of the caption data modules (batches in the module docstring).

    Subclasses set ``name``, ``data_shape``, ``num_classes`` and ``grammar`` (a
    :class:`~diffzoo.data.captions.CaptionGrammar`) and implement :meth:`load_splits`,
    :meth:`_eval_dataset` and :meth:`_prompt_attributes`.

    Args:
        context_length: ``L`` of the token rows.
        caption_seed: seed of the captions' phrasings (independent of ``seed``, the data order).
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.
    """

    grammar: CaptionGrammar

    def __init__(self, context_length: int = 16, caption_seed: int = 0, **loader):
        super().__init__(**loader)
        self.context_length = int(context_length)
        self.caption_seed = int(caption_seed)
        self._tokenizer: WordTokenizer | None = None

    @property
    def tokenizer(self) -> WordTokenizer:
        """The word-level tokenizer over the training phrasings' words (built without data)."""
        if self._tokenizer is None:
            self._tokenizer = WordTokenizer(self.grammar.vocabulary("train"), self.context_length)
        return self._tokenizer

    @property
    def attribute_values(self) -> Mapping[str, tuple[str, ...]]:
        """Attribute name → names of its values (value ``k`` is ``attribute_values[name][k]``)."""
        return self.grammar.attribute_values

    @property
    def empty_tokens(self) -> torch.Tensor:
        """int64 ``[L]``: the tokens of the empty caption (the unconditional input)."""
        return self.tokenizer.encode("")

    def _check_register(self, which: str) -> None:
        if which not in REGISTERS:
            raise ConfigError(f"{self.name}: caption split {which!r} is not one of {list(REGISTERS)}")

    def _prompt_attributes(self, which: str, n: int, seed: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _eval_dataset(self, which: str) -> CaptionedDataset:
        raise NotImplementedError

    def prompts(self, which: str = "train", n: int = 20, seed: int = 0) -> PromptSet:
        """``n`` prompts of register ``which`` (``"train"``: training phrasings and compositions;
        ``"heldout"``: held-out paraphrases / compositions). Prompt ``j`` is a function of
        ``(seed, which, j)``; see each data module for how its attributes are chosen."""
        self._check_register(which)
        attrs = self._prompt_attributes(which, int(n), int(seed))
        text = self.grammar.captions(attrs, which, seed, f"prompts/{which}")
        tensors = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in attrs.items()}
        return PromptSet(text, self.tokenizer.encode(text), tensors, tensors.get("class"))

    def eval_set(self, which: str = "train") -> CaptionedDataset:
        """Real images for evaluation captioned in register ``which`` (see each data module)."""
        self._check_register(which)
        self.setup("validate")
        return self._eval_dataset(which)


class ClassAttributeDataModule(CaptionedDataModule):
    """A labelled image data set whose captions name the class and one measured binary attribute.

    The attribute of an image is ``measure(x) > median`` of its class, the medians computed on the
    **training split only** (:attr:`class_medians`) and applied unchanged to the held-out split
    and to generated images (:meth:`attribute_of`). Attributes: ``{"class", <attribute_name>}``.

    Subclasses set ``attribute_name`` and implement :meth:`measure` and :meth:`_labelled_splits`.
    """

    attribute_name: str = "attribute"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.class_medians: torch.Tensor | None = None
        self._val_parts: tuple | None = None

    @staticmethod
    def measure(x: torch.Tensor) -> torch.Tensor:
        """float ``[N, C, H, W]`` in ``[-1, 1]`` → float64 ``[N]``, the measured quantity."""
        raise NotImplementedError

    def _labelled_splits(self) -> DataSplits:
        raise NotImplementedError

    def attribute_of(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """int64 ``[N]``: 1 where ``measure(x) > class_medians[y]`` (images ``[N, C, H, W]`` in
        ``[-1, 1]``, classes ``[N]``), else 0. Needs the training split's medians (after ``setup``)."""
        if self.class_medians is None:
            self.setup("fit")
        return (self.measure(x) > self.class_medians[y.long().cpu()]).long()

    def _measure_all(self, data: InMemoryDataset, chunk: int = 4096) -> torch.Tensor:
        """:meth:`measure` of every image of ``data``: float64 ``[N]`` (in chunks: 60k images at once
        would need gigabytes as float64)."""
        return torch.cat([self.measure(data._convert(data.x[i: i + chunk])) for i in range(0, len(data.x), chunk)])

    def _captioned(self, data: InMemoryDataset, register: str, stream: str) -> CaptionedDataset:
        bold = (self._measure_all(data) > self.class_medians[data.y]).long()  # as attribute_of, in chunks
        attrs = {"class": data.y, self.attribute_name: bold}
        text = self.grammar.captions({k: v.numpy() for k, v in attrs.items()}, register, self.caption_seed, stream)
        return CaptionedDataset(data.x, data.y, attrs, text, self.tokenizer)

    def load_splits(self) -> DataSplits:
        train, val = self._labelled_splits()
        values = self._measure_all(train)
        medians = [float(np.median(values[train.y == k].numpy())) if bool((train.y == k).any()) else float("inf")
                   for k in range(self.num_classes)]
        self.class_medians = torch.tensor(medians, dtype=torch.float64)
        self._val_parts = val
        return DataSplits(self._captioned(train, "train", "train"), self._captioned(val, "train", "val"))

    def _eval_dataset(self, which: str) -> CaptionedDataset:
        # the held-out images, captioned with the training phrasings or the held-out paraphrases
        return self.val_set if which == "train" else self._captioned(self._val_parts, "heldout", "val")

    def _prompt_attributes(self, which: str, n: int, seed: int) -> dict[str, np.ndarray]:
        # prompt j: class (j // 2) mod K, attribute j mod 2 — every (class, attribute) pair in turn
        j = np.arange(n)
        return {"class": (j // 2) % self.num_classes, self.attribute_name: j % 2}
