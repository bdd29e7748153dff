"""Exact denoisers of Gaussian mixtures, for testing samplers and guidance against closed forms.

For ``x_0 ~ Σ_k π_k N(μ_k, Σ_k)`` the noisy marginal under any Gaussian forward process is again a
mixture (:class:`~diffzoo.data.gaussian_mixture.GaussianMixture`), so the score, ε* = −σ∇log p_t and
Tweedie's x̂₀ are exact; conditioning on a label restricts the mixture to that label's components.
"""

from __future__ import annotations

import torch

from .base import Denoiser

__all__ = ["mixture_denoiser", "NULL_LABEL"]

NULL_LABEL = -1  # the label that means "no class" for the exact conditional model


def mixture_denoiser(mixture, process, conditional: bool = True) -> Denoiser:
    """The exact denoiser of ``mixture`` under ``process`` (any forward process), for data ``[B, D]``.

    With ``conditional`` it takes an optional label ``y`` (int64 ``[B]``): rows with a class get
    ``∇ log p_t(x | y)``, rows with :data:`NULL_LABEL` the unconditional score — the exact counterpart
    of a network trained with label dropout, so classifier-free guidance can be checked on it.
    Without, it is the unconditional model (it takes no label, as an unconditional network).
    """

    def net_fn(x: torch.Tensor, tau: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t = tau.to(torch.float64)
        alpha, sigma = process.alpha(t), process.sigma(t)
        if y is None:
            return mixture.score(x, alpha, sigma).to(x.dtype)
        y = torch.as_tensor(y, device=x.device).long().expand(x.shape[0])
        conditional = mixture.score(x, alpha, sigma, y=y.clamp(min=0))
        unconditional = mixture.score(x, alpha, sigma)
        return torch.where((y < 0)[:, None], unconditional, conditional).to(x.dtype)

    if not conditional:
        return Denoiser(lambda x, tau: net_fn(x, tau), process, "score", model_time=lambda t: t)
    return Denoiser(net_fn, process, "score", model_time=lambda t: t, cond_keys=("y",), null_cond={"y": NULL_LABEL})
