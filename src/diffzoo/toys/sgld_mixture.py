"""The two-parameter mixture posterior of Welling & Teh 2011, §5.1 (SGLD's first experiment).

Model (W&T eq. 5), with variances, not standard deviations:

    θ_1 ~ N(0, σ_1²),  θ_2 ~ N(0, σ_2²),
    x_i ~ ½ N(θ_1, σ_x²) + ½ N(θ_1 + θ_2, σ_x²),    σ_1² = 10, σ_2² = 1, σ_x² = 2,

with N = 100 points drawn at θ = (0, 1). The posterior is bimodal (modes near (0, 1) and
(1, −1): swapping the two components gives θ' = (θ_1 + θ_2, −θ_2)). Everything here is exact:
the unnormalised log posterior, its gradient (full-data or the minibatch estimate with the N/n
scaling of W&T eq. 4), the posterior mass of each cell of a grid, and the total-variation
distance of a histogram of samples to it.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

__all__ = ["sample_mixture_data", "MixturePosterior", "GridPosterior", "histogram_tv_distance"]


def sample_mixture_data(
    n: int = 100,
    theta: Sequence[float] = (0.0, 1.0),
    lik_var: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``x_i ~ ½ N(θ_1, σ_x²) + ½ N(θ_1 + θ_2, σ_x²)`` (W&T eq. 5) → float64 ``[n]``."""
    second = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
    mean = theta[0] + second.to(torch.float64) * theta[1]
    return mean + math.sqrt(lik_var) * torch.randn(n, generator=generator, dtype=torch.float64)


class GridPosterior(NamedTuple):
    """Posterior mass per cell of a rectangular grid.

    ``edges1``: ``[B1 + 1]``, ``edges2``: ``[B2 + 1]`` cell edges; ``prob``: ``[B1, B2]`` sums to 1.
    """

    edges1: torch.Tensor
    edges2: torch.Tensor
    prob: torch.Tensor


class MixturePosterior:
    """``p(θ | x) ∝ p(θ) Π_i p(x_i | θ)`` for W&T's mixture (eq. 5).

    Args:
        x: float ``[N]`` observations.
        prior_var: ``(σ_1², σ_2²)``.
        lik_var: ``σ_x²``.
    """

    def __init__(self, x: torch.Tensor, prior_var: Sequence[float] = (10.0, 1.0), lik_var: float = 2.0):
        self.x = torch.as_tensor(x, dtype=torch.float64).flatten()
        self.prior_var = torch.as_tensor(prior_var, dtype=torch.float64)
        if self.prior_var.shape != (2,) or bool((self.prior_var <= 0).any()) or not lik_var > 0:
            raise ValueError("MixturePosterior: need two positive prior variances and lik_var > 0")
        self.lik_var = float(lik_var)

    @property
    def num_data(self) -> int:
        return self.x.numel()

    # ------------------------------------------------------------------ densities
    def log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        """``log N(θ_1; 0, σ_1²) + log N(θ_2; 0, σ_2²)``; ``theta`` ``[..., 2]`` → ``[...]``."""
        theta = theta.to(torch.float64)
        v = self.prior_var.to(theta.device)
        return (-0.5 * theta**2 / v - 0.5 * torch.log(2 * math.pi * v)).sum(-1)

    def _component_log_probs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log ½ N(x; μ_k, σ_x²)`` for k = 1, 2 → ``[..., M, 2]`` (``x``: ``[M]`` or ``[..., M]``)."""
        theta = theta.to(torch.float64)
        means = torch.stack([theta[..., 0], theta[..., 0] + theta[..., 1]], -1)  # [..., 2]
        diff = x.to(theta.device, torch.float64)[..., None] - means[..., None, :]  # [..., M, 2]
        return -0.5 * diff**2 / self.lik_var - 0.5 * math.log(2 * math.pi * self.lik_var) + math.log(0.5)

    def log_likelihood(self, theta: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Per-datum ``log p(x_i | θ)``; ``theta`` ``[..., 2]``, ``x`` ``[M]`` or ``[..., M]``
        (default: all data) → ``[..., M]``."""
        return torch.logsumexp(self._component_log_probs(theta, self.x if x is None else x), -1)

    def log_posterior(self, theta: torch.Tensor) -> torch.Tensor:
        """Unnormalised ``log p(θ) + Σ_i log p(x_i | θ)``; ``[..., 2]`` → ``[...]``."""
        return self.log_prior(theta) + self.log_likelihood(theta).sum(-1)

    def grad_log_posterior(self, theta: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``∇ log p(θ) + (N/n) Σ_{i∈B} ∇ log p(x_i | θ)`` (W&T eq. 4), in closed form.

        Args:
            theta: ``[..., 2]``.
            idx: int64 ``[..., n]`` minibatch indices per ``θ`` (e.g. one row per chain), or
                ``None`` for the full-data gradient (``n = N``).
        Returns: float64 ``[..., 2]``.
        """
        theta = theta.to(torch.float64)
        x = self.x.to(theta.device)
        x = x if idx is None else x[idx]
        n = x.shape[-1]
        logp = self._component_log_probs(theta, x)  # [..., n, 2]
        resp = torch.softmax(logp, -1)  # posterior responsibility of each component
        means = torch.stack([theta[..., 0], theta[..., 0] + theta[..., 1]], -1)
        r = resp * (x[..., None] - means[..., None, :]) / self.lik_var  # ∂ log p / ∂ μ_k, [..., n, 2]
        # μ_1 = θ_1, μ_2 = θ_1 + θ_2  ⇒  ∂/∂θ_1 = r_1 + r_2,  ∂/∂θ_2 = r_2
        g_lik = torch.stack([r.sum(-1), r[..., 1]], -1).sum(-2)
        g_prior = -theta / self.prior_var.to(theta.device)
        return g_prior + (self.num_data / n) * g_lik

    # ------------------------------------------------------------------ exact grid posterior
    def grid_posterior(
        self,
        range1: tuple[float, float] = (-1.5, 2.5),
        range2: tuple[float, float] = (-3.0, 3.0),
        bins: tuple[int, int] = (25, 30),
        subdivisions: int = 8,
    ) -> GridPosterior:
        """Posterior mass of each cell, normalised over the box ``range1 × range2``.

        Each cell's mass is the integral of the unnormalised density by the midpoint rule on a
        ``subdivisions × subdivisions`` sub-grid (exact up to quadrature error, which the tests
        bound by comparing two subdivisions). Choose the box wide enough that the mass outside
        it is negligible.
        """
        (b1, b2), s = bins, subdivisions
        edges1 = torch.linspace(range1[0], range1[1], b1 + 1, dtype=torch.float64)
        edges2 = torch.linspace(range2[0], range2[1], b2 + 1, dtype=torch.float64)
        h1 = (range1[1] - range1[0]) / (b1 * s)
        h2 = (range2[1] - range2[0]) / (b2 * s)
        c1 = range1[0] + h1 * (torch.arange(b1 * s, dtype=torch.float64) + 0.5)
        c2 = range2[0] + h2 * (torch.arange(b2 * s, dtype=torch.float64) + 0.5)
        grid = torch.stack(torch.meshgrid(c1, c2, indexing="ij"), -1)  # [b1 s, b2 s, 2]
        logp = self.log_posterior(grid)
        dens = torch.exp(logp - logp.max())
        mass = dens.reshape(b1, s, b2, s).sum((1, 3))
        return GridPosterior(edges1, edges2, mass / mass.sum())


def histogram_tv_distance(
    samples: torch.Tensor, grid: GridPosterior, weights: torch.Tensor | None = None
) -> float:
    """Total-variation distance ``½ Σ_cells |ĥ − p|`` of a (weighted) histogram of ``samples``
    (``[M, 2]``) to ``grid.prob``. Samples outside the grid count fully against the histogram
    (the grid posterior puts no mass there), so the result is in ``[0, 1]``.

    ``weights``: optional ``[M]`` non-negative sample weights (e.g. the step sizes ε_t, W&T §3).
    """
    samples = samples.detach().to(torch.float64).reshape(-1, 2)
    w = torch.ones(samples.shape[0], dtype=torch.float64) if weights is None else weights.detach().to(torch.float64).flatten()
    if w.numel() != samples.shape[0]:
        raise ValueError(f"histogram_tv_distance: {w.numel()} weights for {samples.shape[0]} samples")
    e1, e2 = grid.edges1, grid.edges2
    i = torch.searchsorted(e1, samples[:, 0].contiguous(), right=True) - 1
    j = torch.searchsorted(e2, samples[:, 1].contiguous(), right=True) - 1
    inside = (i >= 0) & (i < e1.numel() - 1) & (j >= 0) & (j < e2.numel() - 1)
    prob = grid.prob.to(torch.float64)
    hist = torch.zeros_like(prob).flatten()
    hist.index_add_(0, (i * (e2.numel() - 1) + j)[inside], w[inside])
    hist = hist.reshape(prob.shape) / w.sum()
    outside = 1.0 - float(hist.sum())
    return 0.5 * (float((hist - prob).abs().sum()) + outside)
