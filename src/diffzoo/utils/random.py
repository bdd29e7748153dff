"""Random numbers that can be tied to individual samples.

A sampler draws its fresh noise through :func:`randn_like`. ``generator`` may be ``None`` (the
global RNG), one ``torch.Generator`` (the whole batch), or a list with one generator per row —
then the noise of row ``i`` depends only on that row's generator, which is how evaluation makes
sample ``i`` a function of ``(seed, i)`` alone, whatever the batch size or number of processes.
"""

from __future__ import annotations

import hashlib
from typing import Sequence, Union

import torch

GeneratorLike = Union[None, torch.Generator, Sequence[torch.Generator]]

__all__ = ["GeneratorLike", "randn_like", "randn", "derive_seed", "per_sample_generators"]


def randn(shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` (``shape[0]`` = batch) drawn with ``generator``."""
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if isinstance(generator, torch.Generator) else device
        out = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=gen_device)
        return out.to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    rows = [torch.randn(tuple(shape[1:]), generator=g, dtype=dtype, device=g.device) for g in generator]
    return torch.stack(rows).to(device)


def randn_like(x: torch.Tensor, generator: GeneratorLike = None) -> torch.Tensor:
    """Noise shaped, typed and placed like ``x``; see the module docstring for ``generator``."""
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def derive_seed(*parts) -> int:
    """A 63-bit seed that is a stable hash of ``parts`` (ints / strings), the same on every
    machine and Python process (unlike ``hash``)."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)


def per_sample_generators(seed: int, indices, device="cpu", stream: str = "sample") -> list[torch.Generator]:
    """One generator per global sample index, seeded by ``(seed, stream, index)``."""
    gens = []
    for i in indices:
        g = torch.Generator(device=device)
        g.manual_seed(derive_seed(seed, stream, int(i)))
        gens.append(g)
    return gens
