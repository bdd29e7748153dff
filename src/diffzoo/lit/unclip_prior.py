"""``UnCLIPPriorModule``: unCLIP's diffusion prior ``P(z_i | y)`` (Ramesh et al. 2022, §2.2).

Training, for a caption batch (images ``x``, captions ``y``) and a fixed CLIP:

* ``z_i = CLIP_image(x)`` and ``x₀ = encode(z_i)`` — the embedding scaling of
  :mod:`diffzoo.networks.embedding_scaling` (``model.embedding_scaling``: the paper's 17.2 by default);
* the caption is replaced by the empty caption with probability ``text_drop_prob`` (§2.2: "we
  drop the text conditioning information 10 % of the time"), then CLIP-encoded into ``z_t`` and the
  token states the :class:`~diffzoo.networks.prior_transformer.PriorTransformer` reads;
* the objective's loss on ``x₀`` (the experiment's ``objective.prediction: x0``: §2.2 "we find it
  better to train our model to directly predict the unnoised z_i, and use a mean-squared error loss
  on this prediction"), cosine schedule (App. C, Table 3).

Sampling (:meth:`UnCLIPPriorModule.sample_embeddings`) draws ``num_candidates`` embeddings per
caption and keeps the one with the largest ``⟨z_i, z_t⟩`` (§2.2: "we generate two samples of z_i
and select the one with a higher dot product with z_t"); :func:`best_of` is that rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..data.captions import EMPTY_CAPTION
from ..denoisers import Denoiser
from ..errors import ConfigError
from ..networks.embedding_scaling import EmbeddingScaling
from ..networks.clip import retrieve
from ..samplers import SampleBatch, SamplerSpec, sample_indices
from .clip import frozen_clip
from .diffusion import DiffusionModule

__all__ = ["PriorSample", "UnCLIPPriorModule", "best_of"]


class PriorSample(NamedTuple):
    """What the prior gives for ``B`` captions and ``k`` candidates each.

    Attributes:
        z_i: float ``[B, e]`` the kept image embedding of each caption.
        z_t: float ``[B, e]`` the captions' CLIP text embeddings.
        candidates: float ``[k, B, e]`` every drawn embedding.
        scores: float ``[k, B]`` ``⟨candidate, z_t⟩``.
        nfe: network evaluations per candidate.
    """

    z_i: torch.Tensor
    z_t: torch.Tensor
    candidates: torch.Tensor
    scores: torch.Tensor
    nfe: int = 0


def best_of(candidates: torch.Tensor, z_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """unCLIP §2.2's rule: of ``candidates [k, B, e]`` keep, per caption, the one with the largest
    dot product with ``z_t [B, e]`` → ``(kept [B, e], scores [k, B])``."""
    scores = (candidates * z_t[None]).sum(-1)
    kept = candidates.gather(0, scores.argmax(0)[None, :, None].expand(1, *candidates.shape[1:]))[0]
    return kept, scores


class UnCLIPPriorModule(DiffusionModule):
    """The diffusion prior (see the module docstring).

    Args:
        clip: the CLIP whose embeddings the prior models (a config of
            :class:`~diffzoo.networks.clip.CLIP`); frozen.
        clip_ckpt: a ``CLIPModule`` checkpoint with its weights (None: the config's own weights —
            random, good only for a wiring check).
        text_drop_prob: probability of training on the empty caption (0.1 in §2.2).
        embedding_scaling: ``paper`` (17.2), ``sqrt_dim`` or ``data_stats``.
        num_candidates: samples drawn per caption, the best kept (2 in §2.2).
        **kwargs: the :class:`DiffusionModule` arguments (net: a ``PriorTransformer``; the builder's
            image ``data_shape`` is replaced by the embedding's ``(e,)``).
    """

    PARTS = DiffusionModule.PARTS

    def __init__(self, *args, clip: nn.Module, clip_ckpt: str | None = None, text_drop_prob: float = 0.1,
                 embedding_scaling: str = "paper", num_candidates: int = 2, data_shape=None, **kwargs):
        net = kwargs.get("net", args[0] if args else None)
        super().__init__(*args, data_shape=(net.embed_dim,), **kwargs)
        if self.conditional:
            raise ConfigError("model.conditional must be false for the unCLIP prior (the condition is the caption)")
        if not 0.0 <= float(text_drop_prob) < 1.0:
            raise ConfigError(f"model.text_drop_prob must lie in [0, 1), got {text_drop_prob}")
        if int(num_candidates) < 1:
            raise ConfigError(f"model.num_candidates must be >= 1, got {num_candidates}")
        for key, want in (("embed_dim", clip.embed_dim), ("text_dim", clip.text_dim),
                          ("text_length", clip.text_encoder.context_length)):
            if getattr(net, key) != want:
                raise ConfigError(f"net.{key}={getattr(net, key)} does not fit the CLIP (model.clip): set net.{key}={want}")
        self.clip = frozen_clip(clip, clip_ckpt)
        self.text_drop_prob = float(text_drop_prob)
        self.num_candidates = int(num_candidates)
        self.scaling = EmbeddingScaling(embedding_scaling, net.embed_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # CLIP is fixed: never in training mode
        return self

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def text_condition(self, captions: Sequence[str]) -> dict:
        """CLIP-encode ``B`` captions into the network's keyword inputs (``text_embedding [B, e]``,
        ``text_states [B, L, d]``, ``text_mask [B, L]``)."""
        text = self.clip.encode_text(list(captions))
        return {"text_embedding": text.embedding, "text_states": text.states, "text_mask": text.mask}

    @torch.no_grad()
    def image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings ``z_i [B, e]`` of images ``x [B, C, H, W]`` in ``[-1, 1]``."""
        return self.clip.encode_image(x)

    def _dropped(self, text: Sequence[str]) -> list[str]:
        """The captions with each replaced by "" at ``text_drop_prob`` (seeded per step)."""
        if self.text_drop_prob == 0:
            return list(text)
        gen = torch.Generator().manual_seed(self.step_seed("text_drop"))
        drop = torch.rand(len(text), generator=gen) < self.text_drop_prob
        return [EMPTY_CAPTION if d else c for c, d in zip(text, drop.tolist())]

    def on_fit_start(self) -> None:
        """``data_stats`` scaling: the mean / std of the training images' CLIP embeddings."""
        if bool(self.scaling.fitted):
            return
        dm = self.trainer.datamodule
        dm.setup("fit")
        images = dm.train_set.images()
        z = torch.cat([self.image_embeddings(images[i: i + 512].to(self.device)) for i in range(0, len(images), 512)])
        self.scaling.fit(z)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = self.scaling.encode(self.image_embeddings(batch["x"]))
        out = self.objective(self.net, self.schedule, x0, **self.text_condition(self._dropped(batch["text"])))
        self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return out.loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, use_ema: bool = True) -> Denoiser:
        """The prior as a :class:`Denoiser` over scaled embeddings ``[B, e]``, taking ``text``
        (``B`` captions or one for all; none = ""); ``null_cond = {"text": ""}`` when trained
        with text dropout (classifier-free guidance). Its ``data_range`` is unbounded."""
        net = self.ema.shadow if (use_ema and self.ema is not None) else self.net

        def net_fn(x: torch.Tensor, tau: torch.Tensor, text: Sequence[str] | str | None = None) -> torch.Tensor:
            text = EMPTY_CAPTION if text is None else text
            captions = [text] * x.shape[0] if isinstance(text, str) else list(text)
            if len(captions) != x.shape[0]:
                raise ValueError(f"text: got {len(captions)} captions for a batch of {x.shape[0]}")
            return net(x, tau, **self.text_condition(captions))

        null = {"text": EMPTY_CAPTION} if self.text_drop_prob > 0 else None
        return Denoiser(net_fn, self.schedule, self.prediction, cond_keys=("text",), null_cond=null,
                        data_range=(-float("inf"), float("inf")))

    @torch.no_grad()
    def sample_embeddings(self, captions: Sequence[str], num_candidates: int | None = None, sampler: SamplerSpec | None = None,
                          steps: int | None = None, guidance=None, seed: int = 0, use_ema: bool = True,
                          indices: Sequence[int] | None = None) -> PriorSample:
        """Image embeddings for ``B`` captions: ``num_candidates`` (default the module's) draws each,
        the best kept by ⟨z_i, z_t⟩ (§2.2). Candidate ``c`` of caption ``b`` is draw ``indices[b]·k + c``
        of the one sampling loop (seed ``seed``), ``indices`` being the captions' global sample indices
        (``B`` ints, default ``0 … B−1``): caption ``b``'s draws depend on ``(seed, indices[b], k)`` only,
        never on the rest of the batch, so the Python API and ``diffzoo-sample pipeline=unclip`` (in
        batches) agree; ``guidance`` wraps the prior (§5.5 guides only the decoder)."""
        captions = list(captions)
        k = int(num_candidates or self.num_candidates)
        spec = SamplerSpec.of(sampler) if sampler is not None else self.sampler
        if steps is not None:
            spec = spec.with_steps(steps)
        B = len(captions)
        indices = list(range(B)) if indices is None else [int(i) for i in indices]
        if len(indices) != B:
            raise ValueError(f"sample_embeddings: {B} captions but {len(indices)} indices")
        draws = [i * k + c for c in range(k) for i in indices]  # row c·B + b: candidate c of caption b
        batch = sample_indices(self.denoiser(use_ema), spec, draws, seed, (self.net.embed_dim,), device=self.device,
                               guidance=guidance, cond={"text": captions * k})
        candidates = self.scaling.decode(batch.x).view(k, B, -1)
        z_t = self.clip.encode_text(captions).embedding
        kept, scores = best_of(candidates, z_t)
        return PriorSample(kept, z_t, candidates, scores, batch.nfe)

    @torch.no_grad()
    def preview_samples(self, indices, seed: int, sampler: SamplerSpec | None = None, progress: bool = False) -> SampleBatch:
        """What a run's closing grid shows: for the data set's training prompt ``i`` of each index, the
        prior's (best-of-k) embedding, seen as the held-out image CLIP retrieves for it (embeddings
        are not images) → :class:`SampleBatch` of ``[n, C, H, W]`` images."""
        dm = self.trainer.datamodule
        indices = list(indices)
        prompts = dm.prompts("train", max(indices) + 1, seed=self.seed).text
        out = self.sample_embeddings([prompts[i] for i in indices], sampler=sampler, seed=seed)
        images = dm.eval_set("train").images().to(self.device)
        x = images[retrieve(self.clip, images, out.z_i)]
        return SampleBatch(torch.as_tensor(indices, dtype=torch.long), x, None, out.nfe)
