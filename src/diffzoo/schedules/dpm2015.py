"""The original diffusion probabilistic model (Sohl-Dickstein et al. 2015): its β schedule, its
reverse kernel and the closed-form parts of its bound K.

Forward kernel (SD15 eq. 2 / Table App.1): ``q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I)``.

β schedule (SD15 code, ``DiffusionModel.generate_beta_arr``): a constant *fraction* of the
remaining signal variance is destroyed per step, ``β̂_t = 1 / linspace(T, 2, T)[t]`` (so
``β̂_T = ½``), then squeezed into ``[β_min, 1 − 10⁻⁵]``:
``β_t = β_min,t + β̂_t (1 − β_min,t − 10⁻⁵)`` with ``β_min,t = 10⁻⁶ (+ step1_beta at t = 1)``.
If the linspace were integer-spaced, ``∏(1 − β̂_t) = ∏_{k=2..T} (k − 1)/k = 1/T``; it is not
(its spacing is (T − 2)/(T − 1)), and the exact product is a ratio of Gamma functions
(:func:`constant_fraction_signal_left`), close to but not equal to 1/T.

Learned β (SD15 §2.4.1: "β_2…T are learned by gradient ascent on K"; the code has the
parameterisation, ``beta_perturb_coefficients``, but leaves it untrained): the constant-fraction
β̂_t is perturbed on the logit scale by the same Gaussian bumps over t that read out the reverse
kernel, ``β_t = β_min,t + sigmoid(Σ_k c_k g_k(t) + logit β̂_t) (1 − β_min,t − 10⁻⁵)``, so every β_t
stays in ``(β_min,t, 1 − 10⁻⁵)`` and ``c = 0`` gives back the constant-fraction schedule
(:class:`DPM2015Schedule`, ``learn_betas=True``). β_1 can then only fall to its floor
``step1_beta`` — the code's "minimum variance of the learned model".

Reverse kernel (SD15 code, ``get_mu_sigma``), both learned perturbations of the forward kernel:
``μ = √(1 − β_t) x_t + μ_coeff √β_t`` and ``σ² = sigmoid(β_coeff / √T + logit β_t)``.

Bound (SD15 eq. 14), per data dimension, in nats:
``K = −Σ_{t=2}^{T} E_q[KL(q(x_{t−1} | x_t, x_0) ‖ p(x_{t−1} | x_t))] + H_q(x_T | x_0) − H_q(x_1 | x_0) − H_p(x_T)``,
with ``p(x_T) = N(0, I)``. SD15 Table 1 reports, per data point (bits/pixel for images), K itself
(first column; 2.35 bits for the swiss roll) and ``K − L_null`` (second column; 6.45 bits), with
``L_null`` the log-likelihood of the unit Gaussian π = N(0, I), ``−H(N(0, 1))`` per dimension on
data scaled to unit variance; the SD15 code's cost (``get_negL_bound``) is ``−(K − L_null)`` in
bits, multiplied by T instead of T − 1 (README: "the negative of the number in the rightmost
column in Table 1"). Positive ``K − L_null`` means better than the Gaussian.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..utils.bumps import temporal_bump_basis
from .discrete import extract

__all__ = [
    "dpm2015_betas",
    "temporal_bump_basis",
    "DPM2015Schedule",
    "GaussianMoments",
    "constant_fraction_signal_left",
    "dpm2015_reverse_moments",
    "gaussian_kl",
    "gaussian_entropy",
    "BoundEntropies",
    "dpm2015_entropies",
    "dpm2015_bound_bits_vs_gaussian",
]

MAX_BETA_MARGIN = 1e-5  # SD15 code: β restricted to [β_min, 1 − 1e-5]


def dpm2015_betas(T: int, step1_beta: float = 1e-3, min_beta: float = 1e-6) -> torch.Tensor:
    """SD15's constant-fraction schedule (code ``generate_beta_arr`` with zero perturbation).

    ``β_t = β_min,t + (1 / linspace(T, 2, T))_t · (1 − β_min,t − 10⁻⁵)``, ``β_min,t = min_beta``
    plus ``step1_beta`` at t = 1 (index 0; the lower bound on the model's smallest variance).

    Returns: float64 ``[T]`` (index 0 is the paper's t = 1).
    """
    if not isinstance(T, int) or T < 2:
        raise ValueError(f"dpm2015_betas: T must be an integer >= 2, got {T!r}")
    base = 1.0 / torch.linspace(T, 2.0, T, dtype=torch.float64)  # destroy a constant fraction per step
    floor = torch.full((T,), min_beta, dtype=torch.float64)
    floor[0] += step1_beta
    return floor + base * (1.0 - floor - MAX_BETA_MARGIN)


class GaussianMoments(NamedTuple):
    """Mean and variance of a Gaussian of SD15's chains (forward posterior or reverse kernel),
    broadcastable to ``x``'s shape."""

    mean: torch.Tensor
    variance: torch.Tensor


class DPM2015Schedule(nn.Module):
    """SD15's forward chain ``q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I)`` with a β table that
    is either the fixed constant-fraction schedule or learned with the bound (module docstring).

    Args:
        T: number of steps (40 for the swiss roll).
        step1_beta: added to the floor of β_1 (SD15 code: the model's smallest variance).
        min_beta: floor of every β_t (SD15 code: 1e-6).
        learn_betas: make the logit perturbation coefficients ``c`` ``[num_basis]`` trainable
            parameters (initialised at 0); otherwise they are a zero buffer and β is fixed.
        num_basis: number of temporal bumps of the perturbation (SD15 code: 10).

    Every table is recomputed from ``c`` in float64 at each call, so gradients reach ``c``
    through ``q_sample``, ``q_posterior`` and the entropies of the bound. Index ``i`` is the
    paper's ``t = i + 1``.
    """

    def __init__(
        self, T: int = 40, step1_beta: float = 1e-3, min_beta: float = 1e-6, learn_betas: bool = False, num_basis: int = 10
    ):
        super().__init__()
        if not isinstance(T, int) or T < 2:
            raise ValueError(f"schedule.T must be an integer >= 2, got {T!r}")
        if not (0 < min_beta and 0 <= step1_beta and min_beta + step1_beta < 0.5):
            raise ValueError(f"schedule.min_beta must be > 0 and schedule.step1_beta >= 0, got {min_beta}, {step1_beta}")
        self.learn_betas = bool(learn_betas)
        floor = torch.full((T,), float(min_beta), dtype=torch.float64)
        floor[0] += step1_beta
        baseline = 1.0 / torch.linspace(T, 2.0, T, dtype=torch.float64)  # SD15 code beta_baseline
        self.register_buffer("beta_floor", floor)
        self.register_buffer("baseline_logit", torch.logit(baseline))
        self.register_buffer("basis", temporal_bump_basis(T, num_basis))
        coeffs = torch.zeros(num_basis, dtype=torch.float64)
        if self.learn_betas:
            self.beta_perturb = nn.Parameter(coeffs)
        else:
            self.register_buffer("beta_perturb", coeffs)

    @property
    def T(self) -> int:
        return self.baseline_logit.numel()

    def extra_repr(self) -> str:
        return f"T={self.T}, learn_betas={self.learn_betas}"

    def betas(self) -> torch.Tensor:
        """``β_t = β_min,t + sigmoid(Σ_k c_k g_k(t) + logit β̂_t)(1 − β_min,t − 10⁻⁵)`` (SD15 code
        ``generate_beta_arr``): float64 ``[T]``, differentiable in ``c``."""
        z = self.beta_perturb.to(torch.float64) @ self.basis + self.baseline_logit
        return self.beta_floor + torch.sigmoid(z) * (1.0 - self.beta_floor - MAX_BETA_MARGIN)

    def alphas_cumprod(self) -> torch.Tensor:
        """``ᾱ_t = ∏_{s≤t} (1 − β_s)``, float64 ``[T]``."""
        return torch.exp(torch.cumsum(torch.log1p(-self.betas()), 0))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` (SD15 code ``generate_forward_diffusion_sample``) for
        int64 ``t`` ``[B]``; ``x0``, ``noise`` ``[B, …]``."""
        abar = extract(self.alphas_cumprod(), t, x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> GaussianMoments:
        """``q(x_{t−1} | x_t, x_0)`` for indices ``t ≥ 1`` (paper's t ≥ 2): the product of
        ``N(x_{t−1}; √ᾱ_{t−1} x_0, 1 − ᾱ_{t−1})`` and ``q(x_t | x_{t−1})`` (SD15 code ``mu1_scl``,
        ``cov1``, …): variance ``β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)``, mean
        ``(√ᾱ_{t−1} β_t x_0 + √(1 − β_t)(1 − ᾱ_{t−1}) x_t) / (1 − ᾱ_t)``."""
        betas, abar = self.betas(), self.alphas_cumprod()
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        b, a, ap = (extract(v, t, x0) for v in (betas, abar, abar_prev))
        mean = (ap.sqrt() * b * x0 + (1.0 - b).sqrt() * (1.0 - ap) * x_t) / (1.0 - a)
        return GaussianMoments(mean, b * (1.0 - ap) / (1.0 - a))


def constant_fraction_signal_left(T: int) -> float:
    """Exact ``∏_t (1 − β̂_t)`` for the baseline ``β̂_t = 1/v_t``, ``v_t = linspace(T, 2, T)``
    (before the floors of :func:`dpm2015_betas`).

    With spacing ``h = (T − 2)/(T − 1)``, ``v_i = h (a − i)`` and ``v_i − 1 = h (c − i)`` for
    ``a = T/h``, ``c = (T − 1)/h``, so ``∏_{i<T} (c − i)/(a − i) =
    Γ(c + 1) Γ(a − T + 1) / (Γ(c − T + 1) Γ(a + 1))``. It is ≈ 1/T (the code's "~1/T left").
    """
    if not isinstance(T, int) or T < 3:
        raise ValueError(f"constant_fraction_signal_left: T must be an integer >= 3, got {T!r}")
    h = (T - 2) / (T - 1)
    a, c = T / h, (T - 1) / h
    lg = math.lgamma
    return math.exp(lg(c + 1) - lg(c - T + 1) + lg(a - T + 1) - lg(a + 1))


def dpm2015_reverse_moments(
    x_t: torch.Tensor, mu_coeff: torch.Tensor, beta_coeff: torch.Tensor, beta_t: torch.Tensor, T: int
) -> GaussianMoments:
    """SD15's reverse kernel ``p(x_{t−1} | x_t)`` (code ``get_mu_sigma``).

    ``μ = √(1 − β_t) x_t + μ_coeff √β_t``,  ``σ² = sigmoid(β_coeff / √T + logit β_t)``.
    With ``mu_coeff = beta_coeff = 0`` the kernel is the forward kernel run backwards with the
    same variance (the code's "DEBUG" isotropic setting).

    Shapes: ``x_t``, ``mu_coeff``, ``beta_coeff`` ``[B, …]``; ``beta_t`` broadcastable (e.g.
    ``[B, 1, …]`` from ``schedules.extract``).
    """
    mean = torch.sqrt(1.0 - beta_t) * x_t + mu_coeff * torch.sqrt(beta_t)
    variance = torch.sigmoid(beta_coeff / math.sqrt(T) + torch.logit(beta_t))
    return GaussianMoments(mean, variance)


def gaussian_kl(mean_q, var_q, mean_p, var_p) -> torch.Tensor:
    """Elementwise ``KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) = log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²)/(2σ_p²) − ½``
    in nats (the KL term of SD15's ``get_negL_bound``)."""
    return 0.5 * (torch.log(var_p) - torch.log(var_q)) + (var_q + (mean_q - mean_p) ** 2) / (2.0 * var_p) - 0.5


def gaussian_entropy(variance) -> torch.Tensor:
    """Differential entropy of ``N(·, σ²)`` in one dimension: ``½ (1 + log 2π) + ½ log σ²`` (nats)."""
    variance = torch.as_tensor(variance, dtype=torch.float64)
    return 0.5 * (1.0 + math.log(2.0 * math.pi)) + 0.5 * torch.log(variance)


class BoundEntropies(NamedTuple):
    """The closed-form entropy terms of SD15 eq. 14, per dimension, in nats (float64 scalars)."""

    h_endpoint: torch.Tensor  # H_q(x_T | x_0): variance 1 − ∏(1 − β_t)
    h_first_step: torch.Tensor  # H_q(x_1 | x_0): variance β_1
    h_prior: torch.Tensor  # H_p(x_T): the unit Gaussian


def dpm2015_entropies(betas: torch.Tensor) -> BoundEntropies:
    """``H_q(x_T|x_0)``, ``H_q(x_1|x_0)`` and ``H_p(x_T)`` for a β table ``[T]`` (SD15 eq. 14)."""
    betas = torch.as_tensor(betas, dtype=torch.float64)
    signal_left = torch.exp(torch.log1p(-betas).sum())
    return BoundEntropies(
        h_endpoint=gaussian_entropy(1.0 - signal_left),
        h_first_step=gaussian_entropy(betas[0]),
        h_prior=gaussian_entropy(1.0),
    )


def dpm2015_bound_bits_vs_gaussian(kl_sum: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """``(K − L_gauss) / log 2``: SD15's bound relative to an isotropic unit Gaussian, in bits
    per dimension (SD15 Table 1; code ``get_negL_bound`` returns its negative).

    Args:
        kl_sum: ``Σ_{t=2}^{T} E[KL_t]`` per dimension in nats (any shape; e.g. a per-sample
            estimate ``(T − 1) · KL_t`` for ``t ~ U{2, …, T}``). The SD15 code multiplies by
            ``T`` instead of ``T − 1``; the sum has ``T − 1`` terms, so ``T − 1`` is unbiased.
        betas: float ``[T]``.
    Returns: same shape as ``kl_sum``. Multiply by the data dimension for bits per sample.
    """
    h = dpm2015_entropies(betas)
    k = -kl_sum + h.h_endpoint - h.h_first_step - h.h_prior  # SD15 eq. 14
    log_lik_gauss = -gaussian_entropy(1.0)  # E log N(x; 0, 1) for whitened data
    return (k - log_lik_gauss) / math.log(2.0)
