"""What a DDPM-family network is trained to predict, and how the loss is weighted over noise levels.

* Targets (:data:`TARGETS`): the noise ``ε`` (DDPM eq. 14), the clean data ``x_0`` or the velocity
  ``v = α ε − σ x_0`` (Salimans & Ho 2022, §4). The marginal is ``x_t = α x_0 + σ ε``.
* Weightings (:data:`WEIGHTINGS`): ``"none"`` — the plain MSE on the target; ``"min_snr"`` — the
  Min-SNR-γ strategy (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
  Strategy", §3.4): every target's loss is weighted so that it equals ``min(SNR, γ)`` times the
  x_0-MSE, with ``SNR = α²/σ²``. Since ``ε − ε̂ = (α/σ)(x̂_0 − x_0)`` and, for α² + σ² = 1,
  ``v − v̂ = (1/σ)(x̂_0 − x_0)``, the weights are ``min(SNR, γ)/SNR`` (ε), ``min(SNR, γ)`` (x_0)
  and ``min(SNR, γ)/(SNR + 1)`` (v).
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import ConfigError

__all__ = ["TARGETS", "WEIGHTINGS", "Target", "Weighting", "check_target", "check_weighting", "training_target",
           "min_snr_weight"]

Target = Literal["eps", "x0", "v"]
Weighting = Literal["none", "min_snr"]
TARGETS = ("eps", "x0", "v")
WEIGHTINGS = ("none", "min_snr")


def check_target(prediction: str) -> str:
    """``prediction`` if it is one of :data:`TARGETS`, else a :class:`ConfigError` naming ``objective.prediction``."""
    if prediction not in TARGETS:
        raise ConfigError(f"objective.prediction must be one of {list(TARGETS)}; got {prediction!r}")
    return prediction


def check_weighting(weighting: str, snr_gamma: float) -> str:
    """``weighting`` if valid (and γ > 0), else a :class:`ConfigError` naming the key."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"objective.weighting must be one of {list(WEIGHTINGS)}; got {weighting!r}")
    if not float(snr_gamma) > 0:
        raise ConfigError(f"objective.snr_gamma must be > 0 (Min-SNR-γ), got {snr_gamma!r}")
    return weighting


def training_target(prediction: str, x0: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor,
                    sigma: torch.Tensor) -> torch.Tensor:
    """The regression target ``[B, …]`` for ``x_t = α x_0 + σ ε``: ``ε``, ``x_0`` or
    ``v = α ε − σ x_0`` (Salimans & Ho 2022, §4). ``alpha``, ``sigma``: ``[B, 1, …]`` like ``x0``."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    return alpha * noise - sigma * x0  # Salimans & Ho 2022, §4


def min_snr_weight(snr: torch.Tensor, prediction: str, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weight of each sample (Hang et al. 2023, §3.4) → like ``snr`` ``[B]``:
    ``min(SNR, γ)/SNR`` (ε target), ``min(SNR, γ)`` (x_0), ``min(SNR, γ)/(SNR + 1)`` (v)."""
    clipped = torch.clamp(snr, max=float(gamma))
    if prediction == "eps":
        return clipped / snr
    if prediction == "x0":
        return clipped
    return clipped / (snr + 1)
