"""Training objectives. Each owns its noise-level distribution and weighting."""

from .base import ObjectiveOutput, uniform_timesteps
from .simple import SimpleLoss
from .vlb import discretized_gaussian_log_likelihood, mean_flat, normal_kl, prior_bpd, vlb_term_bpd

__all__ = [
    "ObjectiveOutput",
    "uniform_timesteps",
    "SimpleLoss",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "vlb_term_bpd",
    "prior_bpd",
]
