"""Training objectives. Each owns its noise-level distribution and weighting."""

from .base import ObjectiveOutput, uniform_timesteps
from .edm import EDMLoss
from .flow_matching import TIME_SAMPLINGS, FlowMatchingLoss
from .hybrid import HybridLoss, HybridTerms, VLBLoss
from .resample import LossSecondMomentSampler, TimestepDraw, TimestepSampler, UniformSampler
from .simple import SimpleLoss
from .weighting import TARGETS, WEIGHTINGS, min_snr_weight, training_target
from .vlb import discretized_gaussian_log_likelihood, mean_flat, normal_kl, prior_bpd, vlb_term_bpd

__all__ = [
    "ObjectiveOutput",
    "uniform_timesteps",
    "SimpleLoss",
    "EDMLoss",
    "TARGETS",
    "WEIGHTINGS",
    "min_snr_weight",
    "training_target",
    "HybridLoss",
    "VLBLoss",
    "HybridTerms",
    "TimestepDraw",
    "TimestepSampler",
    "UniformSampler",
    "LossSecondMomentSampler",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "vlb_term_bpd",
    "prior_bpd",
    "FlowMatchingLoss",
    "TIME_SAMPLINGS",
]
