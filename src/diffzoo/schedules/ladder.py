"""NCSN's forward process: a ladder of noise levels σ_1 > … > σ_L (Song & Ermon 2019, §3–4).

Noise-conditional score networks perturb the data at a finite set of levels,
``x̃ = x + σ_i z`` with ``z ~ N(0, I)`` (NCSN §3.1, ``q_σ(x̃ | x) = N(x̃; x, σ² I)``). A
:class:`SigmaLadder` holds those levels and is the NCSN counterpart of an SDE object: its
"time" variable is σ itself, so ``alpha(σ) = 1`` and ``sigma(σ) = σ``, and score functions of
NCSN models are called as ``score_fn(x, σ)`` (:mod:`diffzoo.schedules.process`). It also knows how sampling starts
(NCSN / NCSNv2 draw ``x`` from ``U[0, 1]``) and how to spend a smaller budget of Langevin
updates (:meth:`SigmaLadder.plan`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence

import torch
from torch import nn

from ..utils.random import GeneratorLike, randn
from .process import GaussianProcess, check_grid
from .sde import Marginal
from .sigmas import geometric_sigmas

__all__ = ["SigmaLadder", "LangevinPlan", "LADDER_PRIORS"]

Prior = Literal["uniform", "gaussian"]
LADDER_PRIORS = ("uniform", "gaussian")


class LangevinPlan(NamedTuple):
    """What annealed Langevin dynamics runs for a budget: the levels (float64 ``[L']``,
    decreasing) and the updates per level."""

    sigmas: torch.Tensor
    n_steps_each: int


class SigmaLadder(nn.Module, GaussianProcess):
    """Geometric noise levels ``σ_i = exp(linspace(log σ_max, log σ_min, L))_i`` (NCSN §3.1), or
    explicit ones.

    Args:
        sigma_max, sigma_min, L: the geometric ladder (NCSN CIFAR-10: 1, 0.01, 10; NCSNv2
            CIFAR-10: 50, 0.01, 232).
        sigmas: explicit strictly decreasing levels instead (then the three above are unused).
        prior: how sampling starts — ``"uniform"`` on ``prior_range`` per coordinate (NCSN and
            NCSNv2 start from ``U[0, 1]``; the NCSN toy from ``U[−8, 8]``) or ``"gaussian"``,
            ``N(0, σ_1² I)``.
        prior_range: ``(low, high)`` of the uniform start, in the model's data coordinates.

    Buffers: ``sigmas`` float64 ``[L]`` (not saved in checkpoints: the config rebuilds it).
    """

    def __init__(
        self,
        sigma_max: float = 1.0,
        sigma_min: float = 0.01,
        L: int = 10,
        sigmas: Sequence[float] | None = None,
        prior: Prior = "uniform",
        prior_range: Sequence[float] = (0.0, 1.0),
    ):
        super().__init__()
        if sigmas is None:
            levels = geometric_sigmas(float(sigma_max), float(sigma_min), int(L))
        else:
            levels = torch.as_tensor(list(sigmas), dtype=torch.float64).flatten()
            if levels.numel() < 1 or bool((levels <= 0).any()) or bool((levels[1:] >= levels[:-1]).any()):
                raise ValueError(f"SigmaLadder: sigmas must be positive and strictly decreasing, got {levels.tolist()}")
        if prior not in LADDER_PRIORS:
            raise ValueError(f"SigmaLadder: unknown prior {prior!r}; allowed: {list(LADDER_PRIORS)}")
        low, high = (float(v) for v in prior_range)
        if not high > low:
            raise ValueError(f"SigmaLadder: prior_range must be (low, high) with high > low, got {tuple(prior_range)}")
        self.prior = prior
        self.prior_range = (low, high)
        self.register_buffer("sigmas", levels, persistent=False)

    def extra_repr(self) -> str:
        return f"L={self.L}, sigma_max={float(self.sigmas[0]):.4g}, sigma_min={float(self.sigmas[-1]):.4g}, prior={self.prior}"

    @property
    def L(self) -> int:
        """Number of noise levels."""
        return self.sigmas.numel()

    @property
    def t_min(self) -> float:
        """The smallest level σ_L (the ladder's "time" is σ)."""
        return float(self.sigmas[-1])

    @property
    def t_max(self) -> float:
        """The largest level σ_1."""
        return float(self.sigmas[0])

    @property
    def default_steps(self) -> int:
        return self.L

    def prior_sample(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """Starting points of sampling (:meth:`prior_sampling`)."""
        return self.prior_sampling(shape, generator, device=device, dtype=dtype)

    def continuous_view(self):
        """None: a ladder has finitely many levels (PC / ODE samplers and the ODE likelihood need an SDE)."""
        raise ValueError("a σ ladder (NCSN) has no continuous-time SDE: sample it with sampler=annealed_langevin "
                         "(or ddim / ddpm over its levels); the PC / ODE samplers and nll_ode need schedule=vesde / vpsde")

    def time_grid(self, steps: int, spacing: str = "uniform", t_end: float | None = None) -> list[float]:
        """``steps`` of the levels, increasing in σ: all of them for ``steps = L``, else the ladder
        thinned evenly in index (i.e. in log σ), always keeping σ_1 and σ_L."""
        check_grid(steps, spacing, limit=self.L)
        if spacing == "quad":
            raise ValueError("a σ ladder is already geometric: use spacing=uniform")
        keep = sorted({int(round(v)) for v in torch.linspace(0, self.L - 1, steps, dtype=torch.float64).tolist()})
        return sorted(float(self.sigmas[i]) for i in keep)

    # ------------------------------------------------------------------ the process at level σ
    def alpha(self, sigma: torch.Tensor) -> torch.Tensor:
        """Signal scale: 1 at every level (``x̃ = x + σz``), float64 ``[B]``."""
        return torch.ones_like(torch.as_tensor(sigma, dtype=torch.float64))

    def sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Noise scale at "time" σ: σ itself, float64 ``[B]``."""
        return torch.as_tensor(sigma).to(torch.float64)

    def marginal_prob(self, x: torch.Tensor, sigma: torch.Tensor) -> Marginal:
        """``q_σ(x̃ | x) = N(x, σ² I)`` (NCSN §3.1): mean ``x``, std ``σ`` ``[B]``."""
        return Marginal(x, torch.as_tensor(sigma).to(device=x.device, dtype=x.dtype))

    def sample_index(self, batch: int, device=None) -> torch.Tensor:
        """Level indices ``i ~ U{0, …, L−1}`` (NCSN's ``U{1, …, L}``) from the global RNG → int64 ``[batch]``."""
        return torch.randint(0, self.L, (batch,), device=device)

    def index(self, sigma: torch.Tensor) -> torch.Tensor:
        """The level index of each σ (nearest level in log σ) → int64 ``[B]``; a noise-conditional
        net with one embedding per level (NCSN) is looked up with it."""
        log_s = torch.log(torch.as_tensor(sigma, dtype=torch.float64, device=self.sigmas.device)).reshape(-1, 1)
        return (log_s - torch.log(self.sigmas)[None]).abs().argmin(dim=1)

    # ------------------------------------------------------------------ sampling
    def prior_sampling(self, shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """Starting points of annealed Langevin dynamics, ``shape`` (``shape[0]`` = batch).

        ``"uniform"``: ``U[low, high)`` drawn as ``Φ(z)`` of a normal draw (so per-sample generators
        work); ``"gaussian"``: ``σ_1 z``.
        """
        z = randn(shape, generator, device=device, dtype=torch.float64)
        if self.prior == "gaussian":
            return (float(self.sigmas[0]) * z).to(dtype)
        low, high = self.prior_range
        return (low + (high - low) * torch.special.ndtr(z)).to(dtype)

    def plan(self, budget: int | None, n_steps_each: int) -> LangevinPlan:
        """Annealed Langevin under a budget of ``budget`` updates (score evaluations, not counting
        the final denoising step).

        With ``budget ≥ L · n_steps_each`` (or ``None``) the ladder runs as configured. Otherwise all
        ``L`` levels are kept while ``budget ≥ L``, with ``⌊budget / L⌋`` updates each; below ``L``
        the ladder is thinned to ``budget`` levels (always keeping σ_1 and σ_L, the others evenly
        spaced in index, i.e. in log σ) with one update each. The step rule α_i = ε σ_i²/σ_L² is
        unchanged; NCSNv2's ε (Technique 4) is tuned for the full T, so a thinned plan is a
        cheaper, rougher sampler (a wiring check, a preview), not the paper's.
        """
        if n_steps_each < 1:
            raise ValueError(f"SigmaLadder.plan: n_steps_each must be >= 1, got {n_steps_each}")
        if budget is None or budget >= self.L * n_steps_each:
            return LangevinPlan(self.sigmas, n_steps_each)
        if budget < 1:
            raise ValueError(f"SigmaLadder.plan: the budget must be >= 1 update, got {budget}")
        if budget >= self.L:
            return LangevinPlan(self.sigmas, budget // self.L)
        if budget == 1:
            return LangevinPlan(self.sigmas[-1:], 1)
        keep = torch.round(torch.linspace(0, self.L - 1, budget, dtype=torch.float64)).long()
        return LangevinPlan(self.sigmas[keep], 1)
