"""Exact log-likelihood through the probability-flow ODE, and bits/dim.

**ODE route** (Song et al. 2021, Score SDE §4.3 and App. D.2; the instantaneous change of
variables of Chen et al. 2018, Theorem 1): along the probability-flow ODE ``dx/dt = f̃(x, t)``
(eq. 13), ``d log p_t(x(t))/dt = −∇·f̃(x(t), t)``, hence

    log p_eps(x) = log p_T(x(T)) + ∫_eps^T ∇·f̃(x(t), t) dt,

integrated jointly with ``x(t)`` from ``eps`` to ``T``. The divergence is computed exactly
(one backward pass per dimension; small data only) or estimated with Hutchinson's trick
``∇·f̃ = E_v[vᵀ (∂f̃/∂x) v]`` with one Rademacher or Gaussian probe ``v`` per sample, fixed for
the whole solve (Hutchinson 1989; FFJORD, Grathwohl et al. 2019); the estimate of ``log p`` is unbiased.

**Bits/dim** (Score SDE §4.3, "uniform dequantisation"): discrete data with ``L`` levels per
dimension (``x = lo + w·k/(L−1)``, ``w = hi − lo``) is dequantised to ``lo + w·(k + u)/L`` with
``u ~ U(0, 1)`` (:func:`uniform_dequantize`). A density ``p`` on that continuous data gives the
discrete model ``P(k) = ∫_cell(k) p``, a cell of volume ``(w/L)^D``; by Jensen its code length
per dimension, ``−log₂ P(k) / D``, is at most the average over ``u`` of

    bits/dim = −log p(x) / (D ln 2) + log₂ L − log₂ w,

i.e. an offset of ``log₂ 256 − log₂ 2 = 7`` bits for data in ``[−1, 1]`` and ``8`` for ``[0, 1]``
(Score SDE ``likelihood.py``: ``offset = 7 − inverse_scaler(−1)``).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, NamedTuple

import numpy as np
import torch

from .denoisers import Denoiser, as_sde_denoiser, score_denoiser
from .samplers.ode import solve_flow
from .utils.random import GeneratorLike, randn

__all__ = ["LogLikelihood", "ode_log_likelihood", "bits_per_dim", "uniform_dequantize", "HUTCHINSON"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Hutchinson = Literal["rademacher", "gaussian", "exact"]
HUTCHINSON = ("rademacher", "gaussian", "exact")


class LogLikelihood(NamedTuple):
    """``log_likelihood = prior_logp + delta_logp`` (``[B]``, nats) and the NFE of the solve."""

    log_likelihood: torch.Tensor
    prior_logp: torch.Tensor
    delta_logp: torch.Tensor
    nfe: int


def _probe(x: torch.Tensor, kind: str, generator: GeneratorLike) -> torch.Tensor | None:
    """Hutchinson probe like ``x``: Rademacher ±1 or standard normal; ``None`` for exact."""
    if kind == "exact":
        return None
    v = randn(x.shape, generator, device=x.device, dtype=x.dtype)
    return torch.where(v >= 0, 1.0, -1.0).to(x.dtype) if kind == "rademacher" else v


def _drift_and_divergence(drift_fn, x: torch.Tensor, t: torch.Tensor, probe: torch.Tensor | None):
    """``f̃(x, t)`` (like ``x``) and ``∇·f̃`` (``[B]``): exact trace of the Jacobian, or the
    Hutchinson estimate ``vᵀ(∂f̃/∂x)v``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        drift = drift_fn(x, t)
        if probe is not None:
            (vjp,) = torch.autograd.grad((drift * probe).sum(), x)
            div = (vjp * probe).reshape(x.shape[0], -1).sum(-1)
        else:
            flat = drift.reshape(x.shape[0], -1)
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for j in range(flat.shape[1]):
                (row,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=j < flat.shape[1] - 1)
                div = div + row.reshape(x.shape[0], -1)[:, j]
    return drift.detach(), div.detach()


def ode_log_likelihood(*args, **kwargs) -> LogLikelihood:
    """``log p_eps(x)`` in nats by the probability-flow ODE (Score SDE §4.3, App. D.2), two call forms:

    * ``ode_log_likelihood(denoiser, x, *, hutchinson, rtol, atol, eps, method, prior_logp, generator)`` —
      ``x`` in the denoiser's model coordinates; the denoiser is read on its SDE
      (:func:`~diffzoo.denoisers.as_sde_denoiser`: a Score SDE model's own, or the VP SDE of a DDPM
      model's linear β table);
    * ``ode_log_likelihood(score_fn, sde, x, hutchinson="rademacher", …)`` — ``score_fn(x, t)``.

    Args:
        x: ``[B, …]`` data (already dequantised for discrete data, see :func:`uniform_dequantize`).
        hutchinson: divergence estimator — ``"rademacher"`` (the paper), ``"gaussian"`` or
            ``"exact"`` (``D`` backward passes per evaluation).
        rtol, atol, method: scipy ``solve_ivp`` settings (RK45, 1e-5 in the paper).
        eps: start time (1e-5 in the paper's likelihood evaluation).
        prior_logp: ``log p_T(z) → [B]``; defaults to the SDE's ``prior_logp``.
        generator: draws the Hutchinson probes (one per sample, fixed along the solve).
    Returns: :class:`LogLikelihood` with ``[B]`` tensors in ``x``'s dtype; ``nfe`` counts the
        evaluations of the ODE right-hand side (each one score evaluation plus its backward).
    """
    if args and isinstance(args[0], Denoiser):
        return _ode_log_likelihood(*args, **kwargs)
    score_fn, sde, *rest = args
    return _ode_log_likelihood(score_denoiser(score_fn, sde), *rest, **kwargs)


def _ode_log_likelihood(
    denoiser: Denoiser,
    x: torch.Tensor,
    hutchinson: Hutchinson = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    method: str = "RK45",
    prior_logp: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: GeneratorLike = None,
) -> LogLikelihood:
    if hutchinson not in HUTCHINSON:
        raise ValueError(f"ode_log_likelihood: unknown hutchinson {hutchinson!r}; allowed: {list(HUTCHINSON)}")
    model = as_sde_denoiser(denoiser)
    sde = model.process
    if not 0 < eps < sde.T:
        raise ValueError(f"ode_log_likelihood: eps must lie in (0, {sde.T}), got {eps}")
    shape, device, dtype = x.shape, x.device, x.dtype
    B, n = shape[0], x[0].numel()
    drift_fn = sde.reverse(lambda z, t: model.predict(z, t).score, probability_flow=True).sde
    probe = _probe(x, hutchinson, generator)
    nfe = 0

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        # State [x (B·n), ∫ div (B)]: d x/dt = f̃, d(Δlog p)/dt = ∇·f̃.
        nonlocal nfe
        nfe += 1
        xt = torch.from_numpy(y[: B * n]).reshape(shape).to(device=device, dtype=dtype)
        drift, div = _drift_and_divergence(lambda z, s: drift_fn(z, s)[0], xt, torch.full((B,), t, device=device, dtype=dtype), probe)
        return np.concatenate([drift.reshape(-1).double().cpu().numpy(), div.double().cpu().numpy()])

    y0 = np.concatenate([x.detach().reshape(-1).double().cpu().numpy(), np.zeros(B)])
    y = solve_flow(rhs, y0, (eps, sde.T), rtol, atol, method)
    z = torch.from_numpy(y[: B * n]).reshape(shape).to(device=device, dtype=dtype)
    delta_logp = torch.from_numpy(y[B * n:]).to(device=device, dtype=dtype)
    prior = (prior_logp or sde.prior_logp)(z).to(dtype)
    return LogLikelihood(prior + delta_logp, prior, delta_logp, nfe)


def bits_per_dim(nll_nats: torch.Tensor, num_dims: int, data_range: tuple[float, float] = (-1.0, 1.0),
                 num_levels: int = 256) -> torch.Tensor:
    """Negative log-likelihood of uniformly dequantised data in bits per dimension.

    ``bits/dim = nll / (D ln 2) + log₂ L − log₂(hi − lo)`` (module docstring): 7 bits of offset
    for ``data_range=(−1, 1)``, 8 for ``(0, 1)``, with ``L = num_levels = 256``.

    Args:
        nll_nats: ``−log p(x)`` of the continuous (dequantised, scaled) data, ``[B]`` or scalar.
        num_dims: ``D``, dimensions per sample (e.g. 3·32·32).
        data_range: ``(lo, hi)`` the data were scaled to.
    Returns: bits/dim, same shape as ``nll_nats``.
    """
    lo, hi = data_range
    if not hi > lo or num_dims < 1 or num_levels < 2:
        raise ValueError(f"bits_per_dim: need hi > lo, num_dims ≥ 1, num_levels ≥ 2; got {data_range}, {num_dims}, {num_levels}")
    offset = math.log2(num_levels) - math.log2(hi - lo)
    return torch.as_tensor(nll_nats) / (num_dims * math.log(2)) + offset


def uniform_dequantize(x: torch.Tensor, generator: GeneratorLike = None, data_range: tuple[float, float] = (-1.0, 1.0),
                       num_levels: int = 256) -> torch.Tensor:
    """Score SDE's uniform dequantisation of quantised data ``x = lo + w·k/(L−1)``:
    ``lo + w·(k + u)/L`` with ``u ~ U(0, 1)`` i.i.d. (reference code: ``(255·x + u)/256`` on [0, 1]).

    Shapes: ``[B, …] → [B, …]``; values in ``[lo, hi)``.
    """
    lo, hi = data_range
    w = hi - lo
    k = torch.round((x - lo) / w * (num_levels - 1))
    # u ~ U(0, 1) as Φ(z) of a normal draw, so that per-sample generators work.
    u = torch.special.ndtr(randn(x.shape, generator, device=x.device, dtype=torch.float64)).to(x.dtype)
    return lo + w * (k + u) / num_levels
