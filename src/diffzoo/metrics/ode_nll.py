"""NLL in bits/dim of data under a model, by the probability-flow ODE (Score SDE §4.3).

For each held-out example: quantise to ``num_levels`` levels of ``[−1, 1]`` (256: 8 bits, as a
PNG holds it and as the VLB route of :mod:`diffzoo.metrics.vlb` scores it), dequantise uniformly
(:func:`diffzoo.likelihood.uniform_dequantize`), map to the model's coordinates, and integrate the
probability-flow ODE with the Hutchinson divergence estimator
(:func:`diffzoo.likelihood.ode_log_likelihood`: RK45, rtol = atol = 1e-5, start time 1e-5, one
Rademacher probe per example, as the reference ``likelihood.py``). Bits/dim then follow
:func:`diffzoo.likelihood.bits_per_dim` with the model's data range (offset 7 bits for ``[−1, 1]``,
8 for ``[0, 1]``: the same density of the same data, in the two coordinate systems).

Any denoiser whose process has a continuous-time SDE has a probability-flow ODE: a Score SDE model,
and a DDPM ε-model with a linear β table, read as a model of the VP SDE that table discretises
(Score SDE App. B–C; :meth:`~diffzoo.schedules.DiscreteSchedule.as_vpsde`). The latter's ODE NLL and
its discrete VLB (:mod:`diffzoo.metrics.vlb`) then score the same network.

The command-line route is ``diffzoo-eval metrics=[nll_ode]`` (one path, one seeding: example ``i``
uses generator ``(seed, "nll", i)``).
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch

from ..denoisers import Denoiser
from ..likelihood import bits_per_dim, ode_log_likelihood, uniform_dequantize
from ..utils.random import GeneratorLike

__all__ = ["ODENLL", "ode_nll", "main"]


class ODENLL(NamedTuple):
    """``bits_per_dim`` and ``nll`` (nats, model coordinates) per example ``[B]``, and the number
    of ODE right-hand-side evaluations (each one score evaluation plus its backward pass)."""

    bits_per_dim: torch.Tensor
    nll: torch.Tensor
    nfe: int


def ode_nll(
    denoiser: Denoiser,
    x: torch.Tensor,
    num_levels: int = 256,
    dequantize: bool = True,
    hutchinson: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    prior_logp=None,
    generator: GeneratorLike = None,
) -> ODENLL:
    """Bits/dim of data ``x`` under ``denoiser`` (module docstring).

    Args:
        denoiser: the model (a module's ``denoiser()``, in eval mode).
        x: ``[B, …]`` data in ``[−1, 1]``; with ``dequantize`` it is snapped to ``num_levels``
            levels and dequantised, otherwise taken as continuous (then ``num_levels`` only sets
            the bits/dim offset).
        hutchinson, rtol, atol, eps, prior_logp: see :func:`diffzoo.likelihood.ode_log_likelihood`
            (``prior_logp`` defaults to the SDE's prior; an exact ``p_T`` removes the prior mismatch).
        generator: for the dequantisation noise and the Hutchinson probes (one generator, or one
            per example — then example ``i``'s result depends on its own generator only).
    Returns: :class:`ODENLL`.
    """
    if dequantize:
        x = uniform_dequantize(x, generator, data_range=(-1.0, 1.0), num_levels=num_levels)
    ll = ode_log_likelihood(denoiser, denoiser.from_data(x), hutchinson=hutchinson, rtol=rtol, atol=atol, eps=eps,
                            prior_logp=prior_logp, generator=generator)
    nll = -ll.log_likelihood
    bpd = bits_per_dim(nll, x[0].numel(), data_range=denoiser.data_range, num_levels=num_levels)
    return ODENLL(bpd, nll, ll.nfe)


def main(argv: list[str] | None = None) -> None:
    """``python -m diffzoo.metrics.ode_nll`` was a second command for the ODE NLL with its own seeding;
    the NLL has one path now. Say which command replaces it and stop (exit status 2)."""
    print("error: python -m diffzoo.metrics.ode_nll was retired: run diffzoo-eval ckpt_path=CKPT metrics=[nll_ode] "
          "nll.n=N nll.split=val|train (the same ODE likelihood, seeded per example)", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
