"""Samplers: one function each over the denoiser contract (``docs/ARCHITECTURE.md``).

Every sampler is called ``name(denoiser, x_T, steps=None, *, generator=None, callback=None,
progress=False, **options)``: ``denoiser`` a :class:`~diffzoo.denoisers.Denoiser`, ``x_T`` the
starting noise, ``steps`` the NFE budget. It returns the final sample and reports the NFE and the
time it walked through ``callback``; ``sampler.plan(process, steps, **options)`` says beforehand which
grid it walks and what it spends. The earlier call forms (``ddim(eps_fn, schedule, x_T, steps)``,
``pc(score_fn, sde, x_T)``, …) still work.

* ancestral / DDIM: :func:`ddpm`, :func:`ddim` (+ :func:`ddim_encode` / :func:`ddim_decode`) — any process
* SDEs (Score SDE): :func:`pc`, :func:`probability_flow_ode`, :func:`inpaint`, :func:`colorize` — SDE
  models and DDPM models with a linear β table
* few-step solvers over any grid of :mod:`~diffzoo.samplers.grids` (``sampler.grid``): :func:`edm_euler`,
  :func:`edm_heun` (EDM), :func:`dpm_solver` (orders 1–3), :func:`dpmpp_2s`, :func:`dpmpp_2m`,
  :func:`dpmpp_3m`, :func:`dpmpp_2m_sde` (DPM-Solver++), :func:`unipc` — any process
* noise-conditional scores (NCSN): :func:`annealed_langevin`, :func:`langevin`

:class:`SamplerSpec` is a sampler chosen by config; :func:`sample_indices` the one sampling loop.
"""

from .ddim import DDIM_SKIPS, ddim
from .ddim_inversion import ddim_decode, ddim_encode, slerp
from .ddpm import VARIANCES, ddpm
from .dpm_solver import dpm_solver, dpmpp_2s
from .dpm_solver_pp import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m
from .edm import edm_euler, edm_heun
from .grids import GRIDS, solver_grid
from .flow import flow_euler, flow_heun, flow_rk45
from .inpaint import colorize, inpaint, replace_inpaint, replace_inpaint_images
from .langevin import STEP_CONVENTIONS, annealed_langevin, langevin, langevin_update
from .loop import SampleBatch, sample_indices
from .ode import ODE_METHODS, probability_flow_ode
from .pc import CORRECTORS, PREDICTORS, pc, register_corrector, register_predictor
from .plan import SamplingPlan
from .spec import SAMPLERS, SamplerSpec
from .unipc import UNIPC_VARIANTS, unipc

__all__ = [
    "ddpm", "VARIANCES", "ddim", "DDIM_SKIPS", "ddim_encode", "ddim_decode", "slerp", "annealed_langevin", "langevin",
    "langevin_update", "STEP_CONVENTIONS", "pc", "PREDICTORS", "CORRECTORS", "register_predictor", "register_corrector",
    "probability_flow_ode", "ODE_METHODS", "inpaint", "replace_inpaint", "replace_inpaint_images", "colorize", "SamplerSpec", "SAMPLERS", "SamplingPlan",
    "sample_indices", "SampleBatch", "flow_euler", "flow_heun", "flow_rk45",
]
__all__ += ["edm_euler", "edm_heun", "dpm_solver", "dpmpp_2s", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc",
            "UNIPC_VARIANTS", "GRIDS", "solver_grid"]  # few-step solvers and their grids
