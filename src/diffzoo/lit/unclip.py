"""unCLIP's uses as a Python API (Ramesh et al. 2022, §2 and §3): the prior and the decoder as one model.

=====================================  =========================================================
call                                   what it does
=====================================  =========================================================
``UnCLIP.load(prior_ckpt, dec_ckpt)``  the two trained stages (their CLIP must be the same)
``text_to_image(captions)``            prior sample ``z_i`` (best of 2, §2.2) → decoder (§2)
``decode_text_embedding(captions)``    the decoder fed ``z_t`` instead of a prior sample (§5.1's
                                       "prior-free" baseline)
``variations(x, n)``                   ``z_i = CLIP(x)`` decoded with ``n`` different noises (§3.1)
``interpolate(x1, x2, k)``             ``slerp(z_1, z_2, θ)`` for ``k`` values of θ in [0, 1], one
                                       fixed noise (§3.2)
``text_diff(x, y0, y1, k, θ_max)``     ``slerp(z_i, z_d, θ)``, ``z_d = norm(z_t(y1) − z_t(y0))``,
                                       θ from 0 to ``θ_max`` (§3.3), one fixed noise
=====================================  =========================================================

Every call returns :class:`UnCLIPImages` (images in ``[-1, 1]``, one label per image, the image
embeddings decoded); :func:`save_labelled_grid` writes them as a PNG grid with the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..data.caption_preview import save_caption_grid
from ..data.captions import EMPTY_CAPTION
from ..errors import ConfigError
from .build import load_module

__all__ = ["UnCLIP", "UnCLIPImages", "save_labelled_grid", "slerp"]


def slerp(a: torch.Tensor, b: torch.Tensor, theta) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; unCLIP §3.2 "z_iθ = slerp(z_i1, z_i2, θ)") between unit
    vectors ``a, b [..., e]``: ``sin((1−θ)Ω)/sin Ω · a + sin(θΩ)/sin Ω · b`` with ``cos Ω = ⟨a, b⟩``
    (linear interpolation, renormalised, where ``Ω ≈ 0``). ``theta``: a number or ``[T]`` → ``[T, ..., e]``."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    theta = torch.as_tensor(theta, dtype=a.dtype, device=a.device)
    scalar = theta.ndim == 0
    theta = theta.reshape(-1, *([1] * a.ndim))
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    out = (torch.sin((1 - theta) * omega) * a + torch.sin(theta * omega) * b) / so
    near = so < 1e-4  # a ≈ ±b: the great circle is (numerically) undefined, fall back to a normalised lerp
    out = torch.where(near, F.normalize((1 - theta) * a + theta * b, dim=-1), out)
    return out[0] if scalar else out


class UnCLIPImages(NamedTuple):
    """``images [N, C, H, W]`` in ``[-1, 1]``, ``labels`` (N strings), ``z_i [N, e]`` decoded, and the
    network evaluations per sample of each stage that ran (``{"prior": k, "decoder": k}``)."""

    images: torch.Tensor
    labels: list[str]
    z_i: torch.Tensor
    nfe: dict | None = None


def save_labelled_grid(out: UnCLIPImages, path, ncol: int | None = None) -> Path:
    """Write ``out`` as a PNG grid, each image with its label."""
    return save_caption_grid(out.images, out.labels, path, ncol=ncol)


class UnCLIP:
    """The prior (:class:`~diffzoo.lit.unclip_prior.UnCLIPPriorModule`, optional for the prior-free
    uses) and the decoder (:class:`~diffzoo.lit.unclip_decoder.UnCLIPDecoderModule`) as one model.

    Args:
        decoder: the decoder module.
        prior: the prior module (None: only variations, interpolations and text diffs).
        decoder_guidance: a guidance object wrapping the decoder (e.g. ``ClassifierFreeGuidance(w)``);
            §5.5 guides only the decoder.
        prior_guidance: likewise for the prior (None: unguided, as §5.5).
        sampler, steps: the decoder's sampler / NFE budget (default its own).
        prior_sampler: the prior's sampler (default its own).
        num_candidates: prior samples drawn per caption, the best kept (None: the prior's own, 2 in §2.2).
        use_ema: sample with the stages' EMA weights (else the raw ones).
    """

    def __init__(self, decoder, prior=None, decoder_guidance=None, prior_guidance=None, sampler=None, steps: int | None = None,
                 prior_sampler=None, num_candidates: int | None = None, use_ema: bool = True):
        if prior is not None and prior.clip.embed_dim != decoder.clip.embed_dim:
            raise ConfigError("the prior and the decoder were trained on CLIPs of different widths")
        self.prior, self.decoder = prior, decoder
        self.clip = decoder.clip
        self.decoder_guidance, self.prior_guidance = decoder_guidance, prior_guidance
        self.sampler, self.steps = sampler, steps
        self.prior_sampler, self.num_candidates, self.use_ema = prior_sampler, num_candidates, use_ema

    @classmethod
    def load(cls, prior_ckpt: str | None, decoder_ckpt: str, **kwargs) -> "UnCLIP":
        """Both stages from their checkpoints (the decoder's CLIP is used for encoding images)."""
        prior = load_module(prior_ckpt) if prior_ckpt else None
        return cls(load_module(decoder_ckpt), prior, **kwargs)

    def _decode(self, z: torch.Tensor, captions, indices, seed: int) -> torch.Tensor:
        return self.decode(z, captions, indices, seed).images

    @torch.no_grad()
    def decode(self, z: torch.Tensor, captions: Sequence[str] | str | None = None, indices: Sequence[int] | None = None,
               seed: int = 0) -> UnCLIPImages:
        """The decoder alone: image embeddings ``z [B, e]`` (with ``B`` captions, one for all, or none = "")
        → images ``[B, C, H, W]``; image ``b`` is sample ``indices[b]`` (default ``b``) of the one sampling
        loop, so it depends on ``(seed, indices[b])`` only. Labels are the captions."""
        B = z.shape[0]
        batch = self.decoder.decode(z, captions, indices, seed, sampler=self.sampler, steps=self.steps,
                                    guidance=self.decoder_guidance, use_ema=self.use_ema)
        labels = [captions or ""] * B if captions is None or isinstance(captions, str) else list(captions)
        return UnCLIPImages(batch.x, labels, z, {"decoder": batch.nfe})

    @torch.no_grad()
    def image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings ``[B, e]`` of images ``x [B, C, H, W]`` in ``[-1, 1]``."""
        return self.clip.encode_image(x.to(self.decoder.device))

    @torch.no_grad()
    def text_to_image(self, captions: Sequence[str], seed: int = 0, num_candidates: int | None = None,
                      indices: Sequence[int] | None = None) -> UnCLIPImages:
        """Caption ``b`` → prior sample (best of ``num_candidates``, default the object's, else the prior's)
        → decoder, with the caption (§2) → ``B`` images ``[B, C, H, W]``. ``indices``: the captions' global
        sample indices (``B`` ints; then image ``b`` depends on ``(seed, indices[b])`` only, whatever the
        batch; default ``0 … B−1``, as ``diffzoo-sample pipeline=unclip`` numbers its samples)."""
        if self.prior is None:
            raise ConfigError("text_to_image needs the prior: UnCLIP.load(prior_ckpt=…, …)")
        captions = list(captions)
        prior = self.prior.sample_embeddings(captions, num_candidates or self.num_candidates, sampler=self.prior_sampler,
                                             guidance=self.prior_guidance, seed=seed, use_ema=self.use_ema, indices=indices)
        out = self.decode(prior.z_i, captions, range(len(captions)) if indices is None else indices, seed)
        return out._replace(nfe={"prior": prior.nfe, **out.nfe})

    @torch.no_grad()
    def decode_text_embedding(self, captions: Sequence[str], seed: int = 0) -> UnCLIPImages:
        """The decoder fed the captions' CLIP *text* embeddings in place of image embeddings (§5.1's
        comparison: "the decoder conditioned on text embeddings zero-shot")."""
        captions = list(captions)
        z = self.clip.encode_text(captions).embedding
        return UnCLIPImages(self._decode(z, captions, range(len(captions)), seed), captions, z)

    @torch.no_grad()
    def variations(self, x: torch.Tensor, n: int, seed: int = 0, captions: Sequence[str] | None = None) -> UnCLIPImages:
        """``n`` variations of each image ``x [B, C, H, W]``: its CLIP embedding decoded with ``n`` different
        noises (sample indices ``b·n … b·n + n − 1``), caption "" unless given (§3.1)."""
        z = self.image_embeddings(x).repeat_interleave(n, 0)
        caps = [c for c in (captions or [EMPTY_CAPTION] * len(x)) for _ in range(n)]
        labels = [f"variation {j} of image {b}" for b in range(len(x)) for j in range(n)]
        return UnCLIPImages(self._decode(z, caps, range(len(z)), seed), labels, z)

    @torch.no_grad()
    def interpolate(self, x1: torch.Tensor, x2: torch.Tensor, k: int = 8, seed: int = 0, index: int = 0) -> UnCLIPImages:
        """``k`` images between two images ``[1, C, H, W]``: ``slerp(z_1, z_2, θ)``, θ = 0 … 1, all decoded
        from one noise (sample ``index``, §3.2's fixed decoder latent)."""
        thetas = torch.linspace(0, 1, k)
        z = slerp(self.image_embeddings(x1)[0], self.image_embeddings(x2)[0], thetas)
        return UnCLIPImages(self._decode(z, None, [index] * k, seed), [f"θ = {t:.2f}" for t in thetas.tolist()], z)

    @torch.no_grad()
    def text_diff(self, x: torch.Tensor, caption_from: str, caption_to: str, k: int = 6, theta_max: float = 0.5,
                  seed: int = 0, index: int = 0) -> UnCLIPImages:
        """§3.3 text diffs: ``z_d = norm(z_t(caption_to) − z_t(caption_from))``, then ``slerp(z_i, z_d, θ)``
        for θ from 0 to ``theta_max`` (0.25–0.5 in the paper), decoded from one noise."""
        z_t = self.clip.encode_text([caption_from, caption_to]).embedding
        z_d = F.normalize(z_t[1] - z_t[0], dim=-1)
        thetas = torch.linspace(0, float(theta_max), k)
        z = slerp(self.image_embeddings(x)[0], z_d, thetas)
        return UnCLIPImages(self._decode(z, None, [index] * k, seed), [f"θ = {t:.2f}" for t in thetas.tolist()], z)
