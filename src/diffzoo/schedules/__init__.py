"""Forward processes: discrete β tables and schedules, continuous SDEs (VP / sub-VP / VE), σ grids."""

from .betas import (
    betas_from_alphas_cumprod,
    cosine_betas,
    linear_betas,
    scaled_linear_betas,
    sqrt_linear_betas,
)
from .flow import RectifiedFlow, alpha_sigma_derivatives, flow_from, x0_eps_from_flow
from .discrete import DiscreteSchedule, PosteriorMoments, extract, spaced_timesteps
from .edm import EDMProcess, karras_sigmas
from .sde import SDE, VESDE, VPSDE, AncestralStep, Discretization, Marginal, ReverseSDE, SDECoefficients, SubVPSDE
from .sigmas import geometric_sigmas

__all__ = [
    "linear_betas",
    "scaled_linear_betas",
    "cosine_betas",
    "sqrt_linear_betas",
    "betas_from_alphas_cumprod",
    "DiscreteSchedule",
    "PosteriorMoments",
    "extract",
    "spaced_timesteps",
    "SDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "ReverseSDE",
    "SDECoefficients",
    "Marginal",
    "Discretization",
    "AncestralStep",
    "geometric_sigmas",
    "RectifiedFlow",
    "alpha_sigma_derivatives",
    "flow_from",
    "x0_eps_from_flow",
    "EDMProcess",
    "karras_sigmas",
]
