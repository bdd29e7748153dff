"""``CLIPModule``: contrastive image–text pre-training of a :class:`~diffzoo.networks.clip.CLIP` on a
caption data set (Radford et al. 2021, §2.3 and the pseudo-code of Fig. 3).

For a batch of ``B`` (image, caption) pairs with unit embeddings ``I_e, T_e [B, e]``::

    logits = exp(t) · I_e T_eᵀ                                 # [B, B], learned temperature t
    loss   = (CE(logits, arange(B)) + CE(logitsᵀ, arange(B))) / 2   # symmetric InfoNCE

Caption data sets repeat captions inside a batch ("a bold digit seven" for several images); Fig. 3
treats every off-diagonal pair as a negative regardless, and so does this module (``targets:
diagonal``, the paper's). ``targets: same_caption`` instead spreads the target of each row over
every column with the identical caption (soft targets), which removes those false negatives.

Validation logs ``val/loss`` and zero-shot accuracy (CLIP §3.1.2: each class's training-register
prompts ensembled, §3.1.4) for every attribute of the data set's prompts (``val/zero_shot_class``,
``val/zero_shot_bold`` …) and for held-out paraphrases (``val/zero_shot_heldout_class`` …).
:meth:`sample` is **retrieval**, not generation: the held-out image nearest to each of ``n``
prompts (the run's closing PNG shows what the model matches to a caption).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..checkpoints import load_checkpoint
from ..errors import CheckpointError, ConfigError
from ..networks.clip import CLIP, retrieve
from .base import DiffzooModule

__all__ = ["CLIPModule", "clip_loss", "frozen_clip", "same_caption_targets"]

Targets = Literal["diagonal", "same_caption"]
TARGETS = ("diagonal", "same_caption")


def clip_loss(logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric cross-entropy (Fig. 3): ``logits [B, B]`` (rows images, columns texts);
    ``targets [B, B]`` row-stochastic soft targets (default the identity: pair i is row i's match)."""
    if targets is None:
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


def same_caption_targets(text: list[str], device=None) -> torch.Tensor:
    """``[B, B]`` soft targets: row ``i`` uniform over the items whose caption equals caption ``i``
    (symmetric, so the same matrix serves the text → image direction)."""
    ids = {c: k for k, c in enumerate(dict.fromkeys(text))}
    code = torch.tensor([ids[c] for c in text], device=device)
    same = (code[:, None] == code[None, :]).float()
    return same / same.sum(1, keepdim=True)


def frozen_clip(clip: torch.nn.Module, clip_ckpt: str | None = None) -> torch.nn.Module:
    """``clip`` with the network weights of a ``CLIPModule`` checkpoint (``clip_ckpt``; None keeps
    its own weights, e.g. random ones in a wiring check), in eval mode with no gradients: unCLIP's
    prior and decoder are trained on a fixed CLIP (Ramesh et al. 2022 §2)."""
    if clip_ckpt is not None:
        state = load_checkpoint(clip_ckpt)["state_dict"]
        weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        if not weights:
            raise CheckpointError(f"model.clip_ckpt={clip_ckpt} holds no CLIP network (no 'net.*' weights)")
        missing, unexpected = clip.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"model.clip_ckpt={clip_ckpt} does not fit model.clip: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}")
    return clip.eval().requires_grad_(False)


class CLIPModule(DiffzooModule):
    """Trains a CLIP on captioned images (see the module docstring).

    Args:
        net: a :class:`~diffzoo.networks.clip.CLIP`.
        optimizer, lr_scheduler: config partials.
        targets: ``"diagonal"`` (CLIP Fig. 3) or ``"same_caption"``.
        zero_shot_prompts: prompts per (class, attribute) pair drawn for zero-shot evaluation.
        data_shape, seed: as every diffzoo module.
    """

    PARTS = ("net", "optimizer", "lr_scheduler")

    def __init__(self, net: CLIP, optimizer, lr_scheduler=None, targets: Targets = "diagonal",
                 zero_shot_prompts: int = 10, data_shape=None, seed: int = 0):
        super().__init__()
        if targets not in TARGETS:
            raise ConfigError(f"model.targets must be one of {list(TARGETS)}, got {targets!r}")
        self.net = net
        self.ema = None
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.targets = targets
        self.zero_shot_prompts = int(zero_shot_prompts)
        self.data_shape = tuple(data_shape) if data_shape is not None else (net.in_channels, net.image_size, net.image_size)
        self.seed = seed
        self._val_correct: dict[str, list] = {}

    def trainable_parameters(self):
        """Every parameter that requires a gradient (a frozen text encoder's do not)."""
        return [p for p in self.net.parameters() if p.requires_grad]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def batch_loss(self, batch: dict) -> torch.Tensor:
        """The contrastive loss of one caption batch (``x [B, C, H, W]``, ``tokens [B, L]``, ``text``)."""
        net = self.net
        z_t = net.encode_tokens(batch["tokens"]).embedding if net.text_encoder.trainable else net.encode_text(batch["text"]).embedding
        logits = net.logits(net.encode_image(batch["x"]), z_t)
        targets = same_caption_targets(list(batch["text"]), logits.device) if self.targets == "same_caption" else None
        return clip_loss(logits, targets)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        B = batch["x"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=B)
        self.log("train/temperature", 1.0 / self.net.logit_scale.detach(), on_step=True, on_epoch=False, batch_size=B)
        return loss

    # ------------------------------------------------------------------ zero-shot evaluation
    def _prompt_sets(self):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "prompts") or not hasattr(dm, "num_classes"):
            return {}
        n = 2 * dm.num_classes * self.zero_shot_prompts  # every (class, attribute) pair, zero_shot_prompts times
        return {"": dm.prompts("train", n, seed=self.seed), "heldout_": dm.prompts("heldout", n, seed=self.seed)}

    def on_validation_epoch_start(self) -> None:
        self._val_correct = {}
        self._val_prompts = self._prompt_sets()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self.batch_loss(batch), on_epoch=True, batch_size=batch["x"].shape[0])
        for register, prompts in self._val_prompts.items():
            for name, labels in prompts.attributes.items():
                truth = batch["attributes"][name].to(self.device)
                k = int(labels.max()) + 1
                pred = self.net.zero_shot_logits(batch["x"], prompts.text, labels, k).argmax(-1)
                self._val_correct.setdefault(f"val/zero_shot_{register}{name}", []).append((pred == truth).float().cpu())

    def on_validation_epoch_end(self) -> None:
        for key, values in self._val_correct.items():
            self.log(key, torch.cat(values).mean(), prog_bar=key == "val/zero_shot_class")

    # ------------------------------------------------------------------ retrieval as "samples"
    @torch.no_grad()
    def sample(self, n: int, generator=None, progress: bool = False, callback=None, use_ema: bool = True) -> torch.Tensor:
        """Retrieval, not generation: for prompt ``j`` of the data set's ``n`` training-register
        prompts, the held-out image with the highest cosine similarity → ``[n, C, H, W]`` in ``[-1, 1]``
        (``generator`` is unused: retrieval is deterministic)."""
        dm = self.trainer.datamodule
        images = dm.eval_set("train").images().to(self.device)
        prompts = dm.prompts("train", n, seed=self.seed)
        was_training = self.net.training
        self.net.eval()
        z_t = self.net.encode_text(prompts.text).embedding
        x = images[retrieve(self.net, images, z_t)]
        self.net.train(was_training)
        if callback is not None:
            callback({"nfe": 0})
        return x
