"""Continuous-time forward SDEs of Score SDE (Song et al. 2021): VP, sub-VP and VE.

Each SDE ``dx = f(x, t) dt + g(t) dw`` on ``t ∈ [0, T]`` (``T = 1``) has a Gaussian
perturbation kernel, exposed as ``x_t = α(t)·x_0 + σ(t)·ε`` (:mod:`diffzoo.schedules.process`):

================  ==================================  ===================================
SDE               α(t)                                σ(t)
================  ==================================  ===================================
VP  (eq. 11)      exp(−¼t²(β_max−β_min) − ½tβ_min)     √(1 − α(t)²)
sub-VP (eq. 12)   same as VP                           1 − α(t)²
VE  (eq. 9)       1                                    σ_min (σ_max/σ_min)^t
================  ==================================  ===================================

**VE convention.** Following Score SDE (its ``marginal_prob`` and its DSM loss), the VE
marginal std is ``σ(t) = σ_min(σ_max/σ_min)^t`` — *not* ``√(σ(t)² − σ_min²)``. The SDE only
fixes increments, so this is exact when the process starts from the data already perturbed
with ``N(0, σ_min²)``: ``p_0 = p_data * N(0, σ_min² I)``. Exact scores of a toy density under
VE are therefore those of ``x_0 + σ(t)ε`` (``alpha=1, sigma=σ(t)``).

Branching on the SDE type lives here and nowhere else: samplers use only the methods below
(``sde``, ``discretize``, ``ancestral_step``, ``langevin_alpha``, ``marginal_prob`` …).
``t`` is always a float tensor ``[B]``; coefficients are computed in float64 and cast to the
data's dtype at use.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, NamedTuple

import torch
from torch import nn

from ..utils.random import GeneratorLike, randn
from ..utils.tensors import bcast
from .process import GaussianProcess

__all__ = [
    "SDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "ReverseSDE",
    "SDECoefficients",
    "Marginal",
    "Discretization",
    "AncestralStep",
]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# t = i/(N−1) in float32 can land just below i after scaling by N−1; this tolerance (≪ the
# spacing between grid indices) keeps the truncation in `_index` on i.
_INDEX_TOL = 1e-4


class SDECoefficients(NamedTuple):
    """``drift`` f(x, t) shaped like ``x``; ``diffusion`` g(t) ``[B]``."""

    drift: torch.Tensor
    diffusion: torch.Tensor


class Marginal(NamedTuple):
    """Perturbation kernel ``p_0t(x_t | x_0) = N(mean, std² I)``: ``mean`` like ``x``, ``std`` ``[B]``."""

    mean: torch.Tensor
    std: torch.Tensor


class Discretization(NamedTuple):
    """One discrete forward step ``x_{i+1} = x_i + f_i(x_i) + G_i z`` (Score SDE App. E):
    ``f`` shaped like ``x``, ``G`` ``[B]``."""

    f: torch.Tensor
    G: torch.Tensor


class AncestralStep(NamedTuple):
    """Gaussian ancestral transition ``x_{i−1} ~ N(mean, std² I)``: ``mean`` like ``x``, ``std`` ``[B]``."""

    mean: torch.Tensor
    std: torch.Tensor


def _t64(t: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t).to(torch.float64)


class SDE(nn.Module, GaussianProcess):
    """A forward SDE with Gaussian marginals ``x_t = α(t) x_0 + σ(t) ε`` on ``[0, T]``, ``T = 1``.

    Subclasses implement :meth:`alpha`, :meth:`sigma`, :meth:`sde`, :meth:`prior_sampling`,
    :meth:`prior_logp`; they may refine :meth:`discretize`, :meth:`ancestral_step` and
    :meth:`langevin_alpha`. ``N`` is the number of discretisation steps used by samplers.
    """

    coefficients_fixed = True  # α, σ are fixed by the constructor (GaussianProcess.alpha_sigma memo)

    def __init__(self, N: int):
        super().__init__()
        if not isinstance(N, int) or N < 2:
            raise ValueError(f"{type(self).__name__}: N must be an integer ≥ 2, got {N!r}")
        self.N = N

    @property
    def T(self) -> float:
        """End time of the forward process."""
        return 1.0

    @property
    def t_min(self) -> float:
        return 0.0

    @property
    def t_max(self) -> float:
        return self.T

    @property
    def default_steps(self) -> int:
        """The discretisation ``N`` of the samplers (Score SDE §4.2)."""
        return self.N

    def with_steps(self, steps: int) -> "SDE":
        """This SDE discretised with ``N = steps`` (same constants, same device); itself if N is unchanged.

        Rebuilt from the constructor's own arguments, which every SDE keeps as attributes of the same
        name (``beta_min``, ``beta_max`` / ``sigma_min``, ``sigma_max``)."""
        if int(steps) == self.N:
            return self
        params = inspect.signature(type(self).__init__).parameters
        kwargs = {name: getattr(self, name) for name in params if name not in ("self", "N")}
        device = next(iter(self.buffers()), torch.empty(0)).device
        return type(self)(**kwargs, N=int(steps)).to(device)

    def continuous_view(self):
        """An SDE is its own continuous-time view."""
        return self, None

    @property
    def sampling_eps(self) -> float:
        """Where samplers stop: ``t = 1e-3`` (Score SDE App. G; the score is singular at ``t = 0``)."""
        return 1e-3

    def prior_sample(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """Draw ``x_T ~ p_T`` (:meth:`prior_sampling`)."""
        return self.prior_sampling(shape, generator, device=device, dtype=dtype)

    # ------------------------------------------------------------------ marginals
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale α(t), float64 ``[B]``."""
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise scale σ(t), float64 ``[B]``."""
        raise NotImplementedError

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> Marginal:
        """Mean ``α(t)·x`` (like ``x``) and std ``σ(t)`` (``[B]``, x's dtype) of ``p_0t(x_t | x_0 = x)``."""
        return Marginal(bcast(self.alpha(t), x) * x, self.sigma(t).to(device=x.device, dtype=x.dtype))

    # ------------------------------------------------------------------ dynamics
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> SDECoefficients:
        """Drift ``f(x, t)`` and diffusion ``g(t)`` of ``dx = f dt + g dw``."""
        raise NotImplementedError

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Discretization:
        """Euler–Maruyama discretisation with ``Δt = T/N`` (Score SDE ``sde_lib.SDE.discretize``):
        ``f_i = f(x, t)Δt``, ``G_i = g(t)√Δt``. VP and VE override it with DDPM / SMLD."""
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return Discretization(drift * dt, diffusion * math.sqrt(dt))

    def _index(self, t: torch.Tensor) -> torch.Tensor:
        """Discrete step ``i = ⌊t (N−1)/T⌋`` ∈ {0, …, N−1} for continuous ``t`` ``[B]`` (int64)."""
        i = torch.floor(_t64(t) * (self.N - 1) / self.T + _INDEX_TOL).long()
        return i.clamp(0, self.N - 1)

    def ancestral_step(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> AncestralStep:
        """The discrete reverse transition of the model this SDE discretises, given the score at
        ``(x, t)``. Defined for VP (DDPM) and VE (SMLD)."""
        raise ValueError(
            f"ancestral sampling is defined for VPSDE (DDPM) and VESDE (SMLD), not {type(self).__name__}; "
            "use predictor='reverse_diffusion' or 'euler_maruyama'"
        )

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """``α_i`` in the Langevin corrector's step ``ε = 2α_i (r‖z‖/‖s‖)²`` (Score SDE Alg. 4/5),
        float64 ``[B]``. 1 unless the SDE has a DDPM discretisation."""
        return torch.ones_like(_t64(t))

    # ------------------------------------------------------------------ prior
    def prior_sampling(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """Draw ``x_T ~ p_T`` of ``shape`` (``shape[0]`` = batch)."""
        raise NotImplementedError

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """``log p_T(z)`` in nats, summed over all but the batch dim → ``[B]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reverse
    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (Score SDE eq. 6) or probability-flow ODE (eq. 13) for ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)


def _standard_normal_logp(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over non-batch dims → ``[B]``."""
    D = z[0].numel()
    return -0.5 * D * math.log(2 * math.pi) - 0.5 * z.reshape(z.shape[0], -1).pow(2).sum(-1)


class VPSDE(SDE):
    """Variance-preserving SDE (Score SDE eq. 11), the continuous limit of DDPM:
    ``dx = −½β(t) x dt + √β(t) dw`` with ``β(t) = β_min + t(β_max − β_min)``.

    Discretised with ``N`` steps it is DDPM with ``β_i = (β_min + i/(N−1)(β_max − β_min))/N``
    (Score SDE §3.4); ``N = 1000`` and the defaults give DDPM's linear schedule 1e-4 … 0.02.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"{type(self).__name__}: need 0 ≤ beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        # Score SDE §3.4: β_i = β̄_i / N, β̄_i linear from β_min to β_max.
        discrete_betas = torch.linspace(beta_min / N, beta_max / N, N, dtype=torch.float64)
        self.register_buffer("discrete_betas", discrete_betas, persistent=False)
        self.register_buffer("discrete_alphas", 1.0 - discrete_betas, persistent=False)

    def extra_repr(self) -> str:
        return f"beta_min={self.beta_min}, beta_max={self.beta_max}, N={self.N}"

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = β_min + t(β_max − β_min), float64 ``[B]``."""
        return self.beta_min + _t64(t) * (self.beta_max - self.beta_min)

    def _log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        # Score SDE App. C (VP kernel): log α(t) = −½∫_0^t β(s) ds = −¼t²(β_max − β_min) − ½tβ_min
        t = _t64(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._log_mean_coeff(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        # Score SDE App. C (VP kernel): variance 1 − e^{−∫β}; expm1 keeps precision at small t.
        return torch.sqrt(-torch.expm1(2 * self._log_mean_coeff(t)))

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> SDECoefficients:
        beta = self.beta(t)
        return SDECoefficients(-0.5 * bcast(beta, x) * x, torch.sqrt(beta).to(device=x.device, dtype=x.dtype))

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Discretization:
        """DDPM's forward step ``x_{i+1} = √(1−β_i) x_i + √β_i z`` (Score SDE eq. 10)."""
        i = self._index(t).to(self.discrete_betas.device)
        beta = self.discrete_betas[i]
        f = bcast(torch.sqrt(1.0 - beta) - 1.0, x) * x  # the difference in float64, then cast
        return Discretization(f, torch.sqrt(beta).to(device=x.device, dtype=x.dtype))

    def ancestral_step(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> AncestralStep:
        """DDPM ancestral step in score form (Score SDE eq. 4):
        ``x_{i−1} = (x_i + β_i s(x_i)) / √(1−β_i) + √β_i z``.

        Kept as the Score SDE code writes it (the ``ancestral`` predictor): it is not the exact
        posterior ``q(x_{i−1} | x_i, x̂₀)`` that ``samplers.ddpm`` takes from
        :meth:`GaussianProcess.posterior`; the two agree to first order in ``β_i``."""
        i = self._index(t).to(self.discrete_betas.device)
        beta = self.discrete_betas[i]
        mean = (x + bcast(beta, x) * score) / bcast(torch.sqrt(1.0 - beta), x)
        return AncestralStep(mean, torch.sqrt(beta).to(device=x.device, dtype=x.dtype))

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        # Score SDE Alg. 5: α_i = 1 − β_i of the DDPM discretisation.
        return self.discrete_alphas[self._index(t).to(self.discrete_alphas.device)].to(_t64(t).device)

    def prior_sampling(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """``x_T ~ N(0, I)``."""
        return randn(shape, generator, device=device, dtype=dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        return _standard_normal_logp(z)


class SubVPSDE(VPSDE):
    """Sub-VP SDE (Score SDE eq. 12): ``dx = −½β(t) x dt + √(β(t)(1 − e^{−2∫_0^t β})) dw``.

    Same drift, mean and prior as :class:`VPSDE`; its variance ``(1 − e^{−∫β})²`` is
    bounded by the VP one. It is discretised by Euler–Maruyama (no DDPM chain exists for it,
    so :meth:`ancestral_step` raises); the Langevin corrector uses the VP ``α_i = 1 − β_i``.
    """

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        # Score SDE App. C (sub-VP kernel): std = 1 − e^{−∫_0^t β} = 1 − α(t)².
        return -torch.expm1(2 * self._log_mean_coeff(t))

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> SDECoefficients:
        beta = self.beta(t)
        # Score SDE eq. 12: g² = β(t)(1 − e^{−2∫β}), and −2∫β = 4·log α(t).
        g = torch.sqrt(beta * -torch.expm1(4 * self._log_mean_coeff(t)))
        return SDECoefficients(-0.5 * bcast(beta, x) * x, g.to(device=x.device, dtype=x.dtype))

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Discretization:
        return SDE.discretize(self, x, t)

    def ancestral_step(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> AncestralStep:
        return SDE.ancestral_step(self, x, t, score)


class VESDE(SDE):
    """Variance-exploding SDE (Score SDE eq. 9), the continuous limit of SMLD / NCSN:
    ``dx = σ(t)√(2 ln(σ_max/σ_min)) dw`` with ``σ(t) = σ_min (σ_max/σ_min)^t``.

    Discretised with ``N`` steps it is NCSN's geometric ladder ``σ_i = σ(i/(N−1))``. The prior
    is ``N(0, σ_max² I)``. See the module docstring for the ``σ(0) = σ_min`` convention.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VESDE: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        # SMLD's geometric noise levels σ_1 < … < σ_N (Song & Ermon 2019, §4.2).
        discrete_sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), N, dtype=torch.float64))
        self.register_buffer("discrete_sigmas", discrete_sigmas, persistent=False)

    def extra_repr(self) -> str:
        return f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, N={self.N}"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(_t64(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        # Score SDE App. C (VE with geometric σ): σ(t) = σ_min (σ_max/σ_min)^t
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _t64(t)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> SDECoefficients:
        # Score SDE eq. 9: g(t) = √(dσ²/dt) = σ(t)√(2 ln(σ_max/σ_min))
        g = self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
        return SDECoefficients(torch.zeros_like(x), g.to(device=x.device, dtype=x.dtype))

    def _sigma_pair(self, t: torch.Tensor):
        """``(σ_i, σ_{i−1})`` float64 ``[B]`` with ``σ_{−1} := 0`` (SMLD's data level)."""
        i = self._index(t).to(self.discrete_sigmas.device)
        sigma = self.discrete_sigmas[i]
        prev = torch.where(i == 0, torch.zeros_like(sigma), self.discrete_sigmas[(i - 1).clamp(min=0)])
        return sigma, prev

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Discretization:
        """SMLD's forward step ``x_i = x_{i−1} + √(σ_i² − σ_{i−1}²) z`` (Score SDE eq. 8)."""
        sigma, prev = self._sigma_pair(t)
        return Discretization(torch.zeros_like(x), torch.sqrt(sigma**2 - prev**2).to(device=x.device, dtype=x.dtype))

    def ancestral_step(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> AncestralStep:
        """SMLD ancestral step (Score SDE App. F):
        ``x_{i−1} = x_i + (σ_i² − σ_{i−1}²) s(x_i) + √(σ_{i−1}²(σ_i² − σ_{i−1}²)/σ_i²) z``."""
        sigma, prev = self._sigma_pair(t)
        gap = sigma**2 - prev**2
        mean = x + bcast(gap, x) * score
        return AncestralStep(mean, torch.sqrt(prev**2 * gap / sigma**2).to(device=x.device, dtype=x.dtype))

    def prior_sampling(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """``x_T ~ N(0, σ_max² I)``."""
        return randn(shape, generator, device=device, dtype=dtype) * self.sigma_max

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        return _standard_normal_logp(z / self.sigma_max) - z[0].numel() * math.log(self.sigma_max)


class ReverseSDE:
    """Reverse-time SDE ``dx = [f − g² ∇log p_t] dt + g dw̄`` (Score SDE eq. 6), or with
    ``probability_flow=True`` the ODE ``dx = [f − ½g² ∇log p_t] dt`` (eq. 13).

    ``score_fn(x, t)`` returns ``∇_x log p_t(x)`` for float ``t`` ``[B]``.
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = bool(probability_flow)
        self.N = forward.N
        self.T = forward.T

    def _score_weight(self) -> float:
        return 0.5 if self.probability_flow else 1.0

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> SDECoefficients:
        """Reverse drift (like ``x``) and diffusion (``[B]``; zero for the ODE)."""
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t).to(x.dtype)
        drift = drift - bcast(diffusion**2, x) * score * self._score_weight()
        return SDECoefficients(drift, torch.zeros_like(diffusion) if self.probability_flow else diffusion)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Discretization:
        """Reverse discretisation (Score SDE App. E, reverse diffusion): ``f̄ = f_i − G_i² s``, ``Ḡ = G_i``
        (``½G_i² s`` and ``Ḡ = 0`` for the ODE)."""
        f, G = self.forward.discretize(x, t)
        score = self.score_fn(x, t).to(x.dtype)
        f = f - bcast(G**2, x) * score * self._score_weight()
        return Discretization(f, torch.zeros_like(G) if self.probability_flow else G)
