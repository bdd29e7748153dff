"""The forward process of EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models"): ``x = y + n``, ``n ~ N(0, σ² I)``, with time ``t = σ`` (§3, "σ(t) = t", s(t) = 1).

As a Score SDE object it is the variance-exploding SDE ``dx = √(2t) dw`` (``g(t)² = dσ²/dt = 2t``,
EDM eq. 4 / Table 1 with σ(t) = t), so every sampler over the denoiser contract runs on it: DDIM
(η = 0 is EDM's Euler step on the probability-flow ODE ``dx/dσ = (x − D(x; σ))/σ``, eq. 1 with
Table 1), ancestral sampling through the process's posterior, PC and the probability-flow ODE.
The time domain is ``[σ_min, σ_max] = [0.002, 80]`` (Table 1, "Sampling") and the prior is
``N(0, σ_max² I)`` (Algorithm 1, line 1).
"""

from __future__ import annotations

import math

import torch

from ..utils.random import GeneratorLike, randn
from .process import check_grid
from .sde import SDE, SDECoefficients, _standard_normal_logp, _t64

__all__ = ["EDMProcess", "karras_sigmas"]


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    """EDM's time steps (Karras et al. 2022, eq. 5): ``σ_i = (σ_max^{1/ρ} + i/(N−1) (σ_min^{1/ρ} −
    σ_max^{1/ρ}))^ρ`` for ``i = 0 … N−1``, returned increasing (σ_min first, σ_max last), float."""
    if steps == 1:
        return [float(sigma_max)]
    u = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((lo + u * (hi - lo)) ** rho).tolist()  # eq. 5, read from i = N−1 down to 0


class EDMProcess(SDE):
    """``α(t) = 1``, ``σ(t) = t`` on ``[σ_min, σ_max]`` (EDM §3 and Table 1).

    Args:
        sigma_min, sigma_max: the noise range samplers walk (EDM: 0.002, 80).
        rho: the exponent of the default time grid (eq. 5; ρ = 7).
        N: the default number of grid times (EDM CIFAR-10: 18 Heun steps, 35 NFE).

    :meth:`time_grid` with ``spacing="uniform"`` or ``"even"`` is EDM's grid, evenly spaced in ``σ^{1/ρ}``
    (eq. 5) — this process's natural coordinate, as a σ ladder's "uniform" is even in log σ — so
    DDIM (``skip``) and ancestral sampling (``spacing``) walk it by default; ``"quad"`` is quadratic in
    σ (:meth:`GaussianProcess.time_grid`).
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, N: int = 18):
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"EDMProcess: need 0 < schedule.sigma_min < schedule.sigma_max, got {sigma_min}, {sigma_max}")
        if not rho > 0:
            raise ValueError(f"EDMProcess: schedule.rho must be > 0, got {rho}")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    def extra_repr(self) -> str:
        return f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho}, N={self.N}"

    # ------------------------------------------------------------------ the time domain is σ
    @property
    def T(self) -> float:
        """The largest time, σ_max."""
        return self.sigma_max

    @property
    def t_min(self) -> float:
        return self.sigma_min

    @property
    def sampling_eps(self) -> float:
        """Samplers stop at σ_min (the last step then goes to clean data, EDM Algorithm 1, t_N = 0)."""
        return self.sigma_min

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """``s(t) = 1`` (EDM Table 1), float64 ``[B]``."""
        return torch.ones_like(_t64(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """``σ(t) = t`` (EDM Table 1), float64 ``[B]``."""
        return _t64(t)

    # ------------------------------------------------------------------ dynamics
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> SDECoefficients:
        # EDM eq. 4 with σ(t) = t, s(t) = 1: f = 0, g(t) = √(2 σ̇ σ) = √(2t)
        g = torch.sqrt(2 * _t64(t))
        return SDECoefficients(torch.zeros_like(x), g.to(device=x.device, dtype=x.dtype))

    def prior_sampling(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """``x_0 ~ N(0, σ_max² I)`` (EDM Algorithm 1, line 1)."""
        return randn(shape, generator, device=device, dtype=dtype) * self.sigma_max

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, σ_max² I)`` summed over all but the batch dim → ``[B]``."""
        return _standard_normal_logp(z / self.sigma_max) - z[0].numel() * math.log(self.sigma_max)

    # ------------------------------------------------------------------ grids
    def time_grid(self, steps: int, spacing: str = "uniform", t_end: float | None = None) -> list[float]:
        """``steps`` increasing σ from ``t_end`` (default σ_min) to σ_max: ``"uniform"`` / ``"even"`` are EDM
        eq. 5 (:func:`karras_sigmas`, ρ = :attr:`rho`); other spacings as every process."""
        if spacing not in ("uniform", "even"):
            return super().time_grid(steps, spacing, t_end)
        check_grid(steps, spacing)
        lo = float(self.sampling_eps if t_end is None else t_end)
        if not lo < self.sigma_max:
            raise ValueError(f"time_grid: the end time {lo} must lie below sigma_max = {self.sigma_max}")
        return karras_sigmas(int(steps), lo, self.sigma_max, self.rho)
