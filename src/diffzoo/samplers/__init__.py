"""Samplers: one function each, sharing one signature (DESIGN.md "diffzoo.samplers").

Each takes the model function first, the starting noise explicitly, and ``generator=None``,
``callback=None``, ``progress=False``; it returns the final sample and reports the number of
network evaluations (``nfe``) through ``callback``.

* discrete time (ε-prediction): :func:`ddpm`, :func:`ddim` (+ :func:`ddim_encode` / :func:`ddim_decode`)
* noise-conditional scores (NCSN): :func:`annealed_langevin`, :func:`langevin`
* SDEs (Score SDE): :func:`pc`, :func:`probability_flow_ode`, :func:`inpaint`, :func:`colorize`
"""

from .ddim import DDIM_SKIPS, ddim
from .ddim_inversion import ddim_decode, ddim_encode, slerp
from .ddpm import ddpm
from .inpaint import colorize, inpaint
from .langevin import STEP_CONVENTIONS, annealed_langevin, langevin
from .ode import ODE_METHODS, probability_flow_ode
from .pc import CORRECTORS, PREDICTORS, pc, register_corrector, register_predictor

__all__ = [
    "ddpm",
    "ddim",
    "DDIM_SKIPS",
    "ddim_encode",
    "ddim_decode",
    "slerp",
    "annealed_langevin",
    "langevin",
    "STEP_CONVENTIONS",
    "pc",
    "PREDICTORS",
    "CORRECTORS",
    "register_predictor",
    "register_corrector",
    "probability_flow_ode",
    "ODE_METHODS",
    "inpaint",
    "colorize",
]
