"""A Gaussian mixture with exact densities and exact scores under any Gaussian forward process.

If ``x_0 ~ Σ_k π_k N(μ_k, Σ_k)`` and ``x_t = α x_0 + σ ε`` (ε ~ N(0, I)), then
``x_t ~ Σ_k π_k N(α μ_k, α² Σ_k + σ² I)`` — a mixture again, so ``log p_t``, its score
``∇ log p_t``, the optimal noise prediction ``ε*(x_t) = −σ ∇ log p_t(x_t)`` and the posterior mean
``E[x_0 | x_t] = (x_t + σ² ∇ log p_t(x_t)) / α`` (Tweedie's formula) are all exact. These closed
forms are what the samplers, likelihoods and guidance methods are tested against.

Each component may carry a class label; conditioning on a label restricts the mixture to that
label's components (renormalised weights), which gives the exact conditional score
``∇ log p_t(x | y)`` and the exact noisy-classifier gradient ``∇ log p_t(y | x)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["GaussianMixture"]


def _as_batch(v, n: int, ref: torch.Tensor) -> torch.Tensor:
    """Broadcast a float or a ``[B]`` tensor to float64 ``[n]`` on ``ref``'s device."""
    v = torch.as_tensor(v, dtype=torch.float64, device=ref.device)
    return v.expand(n) if v.ndim == 0 else v.reshape(n)


class GaussianMixture:
    """``p(x) = Σ_k π_k N(x; μ_k, Σ_k)`` in ``D`` dimensions.

    Args:
        weights: ``[K]`` positive (normalised here).
        means: ``[K, D]``.
        covs: ``[K, D, D]`` covariance matrices, or ``[K]`` / ``[K, D]`` standard deviations
            (isotropic / diagonal), or a float (shared isotropic std).
        labels: optional ``[K]`` int class of each component (default: component index).
    """

    def __init__(self, weights, means, covs=1.0, labels: Sequence[int] | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"GaussianMixture: means must be [K, D], got shape {tuple(means.shape)}")
        K, D = means.shape
        weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if weights.numel() != K or bool((weights <= 0).any()):
            raise ValueError(f"GaussianMixture: need {K} positive weights, got {weights.tolist()}")
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.ndim == 0:
            covs = covs**2 * torch.eye(D, dtype=torch.float64).expand(K, D, D)
        elif covs.ndim == 1:
            covs = covs[:, None, None] ** 2 * torch.eye(D, dtype=torch.float64)
        elif covs.ndim == 2:
            covs = torch.diag_embed(covs**2)
        if covs.shape != (K, D, D):
            raise ValueError(f"GaussianMixture: covs must be [K, D, D], got {tuple(covs.shape)}")
        self.weights = weights / weights.sum()
        self.means = means
        self.covs = covs.clone()
        self.labels = torch.as_tensor(
            list(range(K)) if labels is None else list(labels), dtype=torch.long
        )
        if self.labels.numel() != K:
            raise ValueError(f"GaussianMixture: need {K} labels, got {self.labels.numel()}")

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    def mean(self) -> torch.Tensor:
        """``E[x]`` → float64 ``[D]``."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> torch.Tensor:
        """``Cov[x] = Σ_k π_k (Σ_k + μ_k μ_kᵀ) − E[x]E[x]ᵀ`` → float64 ``[D, D]``."""
        m = self.mean()
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw ``n`` samples → float32 ``[n, D]`` (and int64 ``[n]`` component labels)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        x = self.means[comp] + torch.einsum("nij,nj->ni", chol[comp], z)
        x = x.float()
        return (x, self.labels[comp]) if return_labels else x

    # ------------------------------------------------------------------ noisy marginals
    def _component_log_probs(self, x: torch.Tensor, alpha, sigma):
        """Per-component ``log π_k + log N(x; α μ_k, α² Σ_k + σ² I)`` and the score of each
        component. Shapes: ``x`` ``[B, D]`` → ``([B, K], [B, K, D])`` (float64)."""
        x64 = x.to(torch.float64).reshape(x.shape[0], -1)
        B, D = x64.shape
        if D != self.dim:
            raise ValueError(f"GaussianMixture: expected x of dim {self.dim}, got {D}")
        a = _as_batch(alpha, B, x64)
        s = _as_batch(sigma, B, x64)
        eye = torch.eye(D, dtype=torch.float64, device=x64.device)
        means = self.means.to(x64.device)
        covs = self.covs.to(x64.device)
        cov_t = a[:, None, None, None] ** 2 * covs[None] + (s[:, None, None, None] ** 2) * eye  # [B,K,D,D]
        diff = x64[:, None, :] - a[:, None, None] * means[None]  # [B,K,D]
        chol = torch.linalg.cholesky(cov_t)
        sol = torch.cholesky_solve(diff[..., None], chol)[..., 0]  # Σ_t⁻¹ (x − α μ)
        maha = (diff * sol).sum(-1)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        logn = -0.5 * (maha + logdet + D * math.log(2 * math.pi))
        return torch.log(self.weights.to(x64.device))[None] + logn, -sol

    def _mask(self, y, B: int, device) -> torch.Tensor | None:
        if y is None:
            return None
        y = torch.as_tensor(y, device=device).long().expand(B) if torch.as_tensor(y).ndim == 0 else torch.as_tensor(y, device=device).long()
        return self.labels.to(device)[None, :] == y[:, None]  # [B, K]

    def log_prob(self, x: torch.Tensor, alpha=1.0, sigma=0.0, y=None) -> torch.Tensor:
        """``log p_t(x)`` (or ``log p_t(x | y)``) for ``x_t = α x_0 + σ ε``.

        ``x``: ``[B, D]``; ``alpha``, ``sigma``: float or ``[B]``; ``y``: int or ``[B]``.
        Returns float64 ``[B]`` in nats.
        """
        logp, _ = self._component_log_probs(x, alpha, sigma)
        mask = self._mask(y, logp.shape[0], logp.device)
        if mask is not None:
            logp = logp.masked_fill(~mask, -math.inf)
            logp = logp - torch.logsumexp(torch.log(self.weights.to(logp.device))[None].masked_fill(~mask, -math.inf), -1, keepdim=True)
        return torch.logsumexp(logp, dim=-1)

    def score(self, x: torch.Tensor, alpha=1.0, sigma=0.0, y=None) -> torch.Tensor:
        """Exact ``∇_x log p_t(x)`` (or ``∇_x log p_t(x | y)``) → float64 ``[B, D]``."""
        logp, comp_scores = self._component_log_probs(x, alpha, sigma)
        mask = self._mask(y, logp.shape[0], logp.device)
        if mask is not None:
            logp = logp.masked_fill(~mask, -math.inf)
        resp = torch.softmax(logp, dim=-1)  # posterior over components
        return (resp[..., None] * comp_scores).sum(1)

    def class_log_prob(self, x: torch.Tensor, y, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """Exact noisy classifier ``log p_t(y | x)`` → float64 ``[B]``."""
        logp, _ = self._component_log_probs(x, alpha, sigma)
        mask = self._mask(y, logp.shape[0], logp.device)
        return torch.logsumexp(logp.masked_fill(~mask, -math.inf), -1) - torch.logsumexp(logp, -1)

    def class_log_prob_grad(self, x: torch.Tensor, y, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """Exact ``∇_x log p_t(y | x) = ∇ log p_t(x | y) − ∇ log p_t(x)`` → float64 ``[B, D]``."""
        return self.score(x, alpha, sigma, y=y) - self.score(x, alpha, sigma)

    def eps(self, x_t: torch.Tensor, alpha, sigma, y=None) -> torch.Tensor:
        """The optimal noise prediction ``ε*(x_t) = E[ε | x_t] = −σ ∇ log p_t(x_t)``
        (Tweedie; Vincent 2011) → float64 ``[B, D]``."""
        s = _as_batch(sigma, x_t.shape[0], x_t)
        return -s[:, None] * self.score(x_t, alpha, sigma, y=y)

    def x0_mean(self, x_t: torch.Tensor, alpha, sigma, y=None) -> torch.Tensor:
        """``E[x_0 | x_t] = (x_t + σ² ∇ log p_t(x_t)) / α`` (Tweedie's formula) → float64 ``[B, D]``."""
        a = _as_batch(alpha, x_t.shape[0], x_t)
        s = _as_batch(sigma, x_t.shape[0], x_t)
        x64 = x_t.to(torch.float64).reshape(x_t.shape[0], -1)
        return (x64 + s[:, None] ** 2 * self.score(x_t, alpha, sigma, y=y)) / a[:, None]
