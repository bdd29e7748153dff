"""Stochastic gradient Langevin dynamics (Welling & Teh 2011) and its step-size schedule.

SGLD (W&T eq. 4) is stochastic gradient descent on the potential ``U(θ) = −log p(θ | x)`` with
half the step size plus Gaussian noise of variance ``ε_t``:

    Δθ_t = (ε_t / 2) · (∇ log p(θ_t) + (N / n) Σ_{i∈B_t} ∇ log p(x_i | θ_t)) + η_t,   η_t ~ N(0, ε_t I)
         = −(ε_t / 2) · ∇U(θ_t) + η_t.

With step sizes satisfying Σ ε_t = ∞ and Σ ε_t² < ∞ (W&T eq. 2), e.g. ``ε_t = a (b + t)^−γ`` with
γ ∈ (0.5, 1], the iterates sample the posterior without a Metropolis–Hastings step.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["SGLD", "PolynomialDecay", "PolynomialDecayLR"]


class SGLD(Optimizer):
    """Welling & Teh's SGLD update (eq. 4) with ``lr`` = ε_t:  ``θ ← θ − (ε/2)·∇U(θ) + N(0, τ ε I)``.

    ``∇U`` is the gradient of the negative log posterior. The optimizer obtains it from the
    gradient of the loss you back-propagate by one fixed factor:

        ∇U = (num_data / batch_size) · ∇loss      (each factor defaults to 1 when omitted)

    so the loss to back-propagate is one of:

    * neither given — ``loss = U``, the potential itself, with the data term already scaled N/n:
      ``−log p(θ) − (N/n) Σ_{i∈B} log p(x_i | θ)``;
    * ``num_data=N`` only — ``loss = U / N``: the minibatch *mean* of ``−log p(x_i | θ)`` plus
      ``−log p(θ) / N`` (the usual mean-reduced loss with the prior spread over the data);
    * ``num_data=N, batch_size=n`` — ``loss = (n/N) · U``: the minibatch *sum* of
      ``−log p(x_i | θ)`` plus ``−(n/N) log p(θ)``.

    Args:
        params: parameters or parameter groups.
        lr: the step size ε (set per step by :class:`PolynomialDecayLR`).
        num_data: ``N``, the size of the data set.
        batch_size: ``n``, the minibatch size; only meaningful together with ``num_data``.
        temperature: τ, multiplies the injected noise variance (1 = the posterior; 0 = plain
            gradient descent with step ε/2).
        generator: ``torch.Generator`` for the injected noise, on the parameters' device.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        num_data: int | None = None,
        batch_size: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        if not lr > 0:
            raise ValueError(f"SGLD: lr (the step size ε) must be > 0, got {lr}")
        if batch_size is not None and num_data is None:
            raise ValueError("SGLD: batch_size is only meaningful with num_data (the N/n scaling)")
        for name, v in (("num_data", num_data), ("batch_size", batch_size)):
            if v is not None and (int(v) != v or v < 1):
                raise ValueError(f"SGLD: {name} must be a positive integer, got {v!r}")
        if temperature < 0:
            raise ValueError(f"SGLD: temperature must be >= 0, got {temperature}")
        self.generator = generator
        defaults = dict(lr=lr, grad_scale=(num_data or 1) / (batch_size or 1), temperature=temperature)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One SGLD step (W&T eq. 4) on every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            eps, scale, tau = group["lr"], group["grad_scale"], group["temperature"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                # W&T eq. 4: θ ← θ − (ε/2)·∇U(θ) + η,  η ~ N(0, ε I)
                p.add_(p.grad, alpha=-0.5 * eps * scale)
                if tau > 0:
                    noise = torch.randn(p.shape, generator=self.generator, device=p.device, dtype=p.dtype)
                    p.add_(noise, alpha=math.sqrt(tau * eps))
        return loss


class PolynomialDecay(NamedTuple):
    """W&T's step sizes ``ε_t = a (b + t)^−γ`` (§3), with ``t = 0, 1, …`` the step index."""

    a: float
    b: float
    gamma: float

    def __call__(self, t: int | float) -> float:
        return self.a * (self.b + t) ** (-self.gamma)

    @classmethod
    def from_endpoints(cls, eps_start: float, eps_end: float, n_steps: int, gamma: float = 0.55) -> "PolynomialDecay":
        """Solve ``a, b`` so that ``ε_0 = eps_start`` and ``ε_{n_steps} = eps_end``.

        From ``a b^−γ = ε_0`` and ``a (b + n)^−γ = ε_n``: ``(1 + n/b)^γ = ε_0/ε_n``, hence
        ``b = n / ((ε_0/ε_n)^{1/γ} − 1)`` and ``a = ε_0 b^γ``.
        """
        _check_gamma(gamma)
        if not (eps_start > eps_end > 0) or n_steps < 1:
            raise ValueError(
                f"PolynomialDecay: need eps_start > eps_end > 0 and n_steps >= 1, "
                f"got {eps_start}, {eps_end}, {n_steps}"
            )
        b = n_steps / ((eps_start / eps_end) ** (1.0 / gamma) - 1.0)
        return cls(a=eps_start * b**gamma, b=b, gamma=gamma)


def _check_gamma(gamma: float) -> None:
    # W&T eq. 2 (Σ ε_t = ∞, Σ ε_t² < ∞) holds for ε_t ∝ t^−γ exactly when 0.5 < γ ≤ 1.
    if not 0.5 < gamma <= 1.0:
        raise ValueError(f"PolynomialDecay: gamma must lie in (0.5, 1] (W&T eq. 2), got {gamma}")


class PolynomialDecayLR(LRScheduler):
    """Sets every group's ``lr`` to ``ε_t = a (b + t)^−γ`` at step ``t`` (the optimizer's
    initial ``lr`` is ignored). Use :meth:`PolynomialDecay.from_endpoints` to pick ``a, b``.
    """

    def __init__(self, optimizer: Optimizer, a: float, b: float, gamma: float, last_epoch: int = -1):
        _check_gamma(gamma)
        if not (a > 0 and b > 0):
            raise ValueError(f"PolynomialDecayLR: need a > 0 and b > 0, got a={a}, b={b}")
        # Plain floats, not the NamedTuple: LRScheduler.state_dict() is the instance __dict__, and
        # checkpoints must stay loadable with torch.load(weights_only=True).
        self.a, self.b, self.gamma = float(a), float(b), float(gamma)
        super().__init__(optimizer, last_epoch)

    @property
    def decay(self) -> PolynomialDecay:
        """The schedule ``ε_t = a (b + t)^−γ``."""
        return PolynomialDecay(self.a, self.b, self.gamma)

    @classmethod
    def from_endpoints(
        cls, optimizer: Optimizer, eps_start: float, eps_end: float, n_steps: int, gamma: float = 0.55
    ) -> "PolynomialDecayLR":
        """The schedule going from ``eps_start`` (step 0) to ``eps_end`` (step ``n_steps``)."""
        a, b, gamma = PolynomialDecay.from_endpoints(eps_start, eps_end, n_steps, gamma)
        return cls(optimizer, a, b, gamma)

    def get_lr(self) -> list[float]:
        return [self.decay(self.last_epoch) for _ in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()
