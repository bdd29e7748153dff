"""The one sampling loop: draw the samples with global indices ``i`` from a denoiser so that sample
``i`` depends only on ``(seed, i)`` — whatever the batch size or the number of processes.

Sample ``i`` starts from ``x_T`` drawn from the model's prior (``process.prior_sample``: N(0, I)
for DDPM and VP models, N(0, σ_max² I) for VE, U[0, 1] for NCSN) with generator ``(seed, "x_T", i)``,
and the sampler draws its later noise from generator ``(seed, "steps", i)``. ``diffzoo-sample``,
``diffzoo-eval``, the evaluation callback, the DDIM table, the guidance sweep, ``edit`` and the final
samples of a training run all draw through :func:`sample_indices`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from ..utils.random import per_sample_generators
from .spec import SamplerSpec

__all__ = ["SampleBatch", "sample_indices"]


class SampleBatch(NamedTuple):
    """Samples with global ``indices`` int64 ``[b]``: ``x`` ``[b, *shape]`` in data coordinates
    (``[−1, 1]`` for images), ``labels`` int64 ``[b]`` or ``None``, and the NFE per sample."""

    indices: torch.Tensor
    x: torch.Tensor
    labels: torch.Tensor | None
    nfe: int


@torch.no_grad()
def sample_indices(
    denoiser,
    sampler: SamplerSpec | Callable,
    indices: Sequence[int],
    seed: int,
    shape: Sequence[int],
    *,
    device=None,
    guidance=None,
    labels: torch.Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
    cond: dict | None = None,
) -> SampleBatch:
    """Draw the samples ``indices`` from ``denoiser`` with ``sampler``.

    Args:
        denoiser: the model (:class:`~diffzoo.denoisers.Denoiser`).
        sampler: the :class:`SamplerSpec`, or any ``sampler(model, x_T, generator=, callback=, progress=)
            → x`` (e.g. inpainting with the batch's known pixels bound).
        indices: global sample indices of this batch.
        seed: the evaluation seed; sample ``i`` depends on ``(seed, i)`` only.
        shape: shape of one sample, e.g. ``(1, 8, 8)`` (in data coordinates: a denoiser with a
            ``model_shape`` of its own, a latent diffusion model's, starts from that shape).
        device: where to sample (the model's device).
        guidance: a :class:`~diffzoo.guidance.Guidance` wrapping the denoiser, or ``None``.
        labels: int64 ``[b]`` conditioning ``y`` of these samples (class-conditional or guided), or ``None``.
        callback: the sampler's per-step callback (it gets ``nfe``).
        cond: any other conditioning of these samples, bound to the model (e.g. ``{"text": [b captions]}``).
    Returns: :class:`SampleBatch`. The global RNG is left as it was.
    """
    indices = list(indices)
    shape = getattr(denoiser, "model_shape", None) or shape  # a latent model starts from z_T (LDM §3), not from an image
    x_T = denoiser.process.prior_sample((len(indices), *shape), per_sample_generators(seed, indices, stream="x_T"),
                                        device=device)
    gens = per_sample_generators(seed, indices, stream="steps")
    model = guidance.wrap(denoiser) if guidance is not None else denoiser
    if labels is not None:
        labels = labels.to(device)
        model = model.bind(y=labels)
    if cond:
        model = model.bind(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in cond.items()})
    nfe = {"n": 0}

    def report(info: dict) -> None:
        nfe["n"] = int(info.get("nfe", nfe["n"]))
        if callback is not None:
            callback(info)

    with torch.random.fork_rng(devices=[]):
        x = sampler(model, x_T, generator=gens, callback=report, progress=progress)
    return SampleBatch(torch.as_tensor(indices, dtype=torch.long), denoiser.to_data(x), labels, nfe["n"])
