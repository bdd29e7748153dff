"""CLIP score: how well images match their captions in a CLIP's joint embedding.

``CLIPScore(x, c) = 100 · cos(z_i(x), z_t(c))`` averaged over the images (the "CLIP score" of GLIDE
§5.2 / Fig. 6, with the 100× of its logit scale; Hessel et al. 2021 use ``2.5·max(cos, 0)`` instead).
GLIDE's point (§5.2) is that the *evaluation* CLIP must not be the one that guided sampling — a guided
model finds "adversarial examples" for its own CLIP — so report the score with a CLIP trained
separately (``clip_captioned_digits``) next to the guiding one's.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["clip_score"]


@torch.no_grad()
def clip_score(clip, images: torch.Tensor, captions: Sequence[str], batch_size: int = 512) -> dict[str, float]:
    """Mean CLIP score of ``images`` ``[N, C, H, W]`` (in ``[-1, 1]``) for their ``N`` ``captions``.

    ``clip`` gives unit embeddings through ``encode_image(x)`` and ``encode_text(captions).embedding``
    (a noised CLIP is read at τ = 0). Returns ``{"clip_score": mean, "clip_score_se": its standard error}``."""
    if len(captions) != images.shape[0]:
        raise ValueError(f"clip_score: {images.shape[0]} images but {len(captions)} captions")
    cos = []
    for i in range(0, images.shape[0], batch_size):
        z_i = clip.encode_image(images[i: i + batch_size])
        z_t = clip.encode_text(list(captions[i: i + batch_size])).embedding
        cos.append((z_i * z_t.to(z_i.dtype)).sum(-1).double().cpu())
    s = 100 * torch.cat(cos)
    se = float(s.std() / len(s) ** 0.5) if len(s) > 1 else float("nan")
    return {"clip_score": float(s.mean()), "clip_score_se": se}
