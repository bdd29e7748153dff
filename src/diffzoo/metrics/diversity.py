"""Diversity of samples drawn for the same prompt: the mean pairwise feature distance.

For the samples ``S_p`` of prompt ``p`` (features ``f_i``), ``D_p = mean_{i<j ∈ S_p} ‖f_i − f_j‖₂``;
the score is the mean of ``D_p`` over prompts with at least two samples. It is the per-prompt
"mean pairwise distance" used to compare sample diversity at matched alignment (unCLIP §5.1 /
Fig. 9 compares decoders this way; GLIDE / CFG trade it for fidelity as the guidance grows). Higher is
more diverse; identical samples give 0. Features: any extractor of :mod:`diffzoo.metrics.features`.
"""

from __future__ import annotations

import torch

__all__ = ["prompt_diversity"]


def prompt_diversity(features: torch.Tensor, prompt_ids: torch.Tensor) -> dict[str, float]:
    """Mean pairwise L2 distance among the samples of each prompt.

    Args:
        features: ``[N, D]`` sample features.
        prompt_ids: int ``[N]``, which prompt each sample was drawn for.
    Returns: ``{"diversity": mean over prompts of D_p, "diversity_se": its standard error over
    prompts, "prompts": number of prompts with ≥ 2 samples}``.
    """
    features = torch.as_tensor(features, dtype=torch.float64)
    prompt_ids = torch.as_tensor(prompt_ids).long()
    if features.ndim != 2 or prompt_ids.shape != (features.shape[0],):
        raise ValueError(f"prompt_diversity: features must be [N, D] and prompt_ids [N], got {tuple(features.shape)} "
                         f"and {tuple(prompt_ids.shape)}")
    per_prompt = []
    for p in prompt_ids.unique():
        f = features[prompt_ids == p]
        k = f.shape[0]
        if k < 2:
            continue
        d = torch.cdist(f, f)
        per_prompt.append(float(d.sum() / (k * (k - 1))))  # each unordered pair counted twice, diagonal zero
    if not per_prompt:
        raise ValueError("prompt_diversity: no prompt has two samples")
    scores = torch.tensor(per_prompt, dtype=torch.float64)
    se = float(scores.std() / len(scores) ** 0.5) if len(scores) > 1 else float("nan")
    return {"diversity": float(scores.mean()), "diversity_se": se, "prompts": len(per_prompt)}
