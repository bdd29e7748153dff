"""A sampler chosen by config: its name, its NFE budget ``steps`` and its options.

``conf/sampler/*.yaml`` instantiate a :class:`SamplerSpec`; modules, evaluation and the command-line
tools ask it what they need — the time grid and NFE it will spend on a process (:meth:`plan`),
whether it takes ADM's mean-form guidance, a copy with another budget (:meth:`with_steps`) — and call
it on a denoiser. Nothing else reads sampler internals. Checkpoints written before the spec existed
store their sampler as a Hydra ``_partial_`` of the sampler function; :meth:`SamplerSpec.of` reads
those too.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import torch

from ..denoisers import THRESHOLDS, x0_threshold
from ..errors import ConfigError
from .ddim import ddim
from .ddpm import ddpm
from .dpm_solver import dpm_solver, dpmpp_2s
from .dpm_solver_pp import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m
from .edm import edm_euler, edm_heun
from .flow import flow_euler, flow_heun, flow_rk45
from .langevin import annealed_langevin
from .ode import probability_flow_ode
from .pc import pc
from .plan import SamplingPlan
from .unipc import unipc

__all__ = ["SamplerSpec", "SAMPLERS", "SPEC_SETTINGS"]

# name → sampler function (each has .core(denoiser, x_T, steps, **options) and .plan(process, steps, **options))
SAMPLERS: dict[str, Callable] = {
    "ddpm": ddpm,
    "ddim": ddim,
    "pc": pc,
    "ode": probability_flow_ode,
    "annealed_langevin": annealed_langevin,
    # few-step solvers (issue 19): EDM, DPM-Solver, DPM-Solver++, UniPC
    "edm_euler": edm_euler,
    "edm_heun": edm_heun,
    "dpm_solver": dpm_solver,
    "dpmpp_2s": dpmpp_2s,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_3m": dpmpp_3m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "unipc": unipc,
}
# rectified flow / flow matching: ODE solvers of dx/dt = u in the process's own time (samplers/flow.py)
SAMPLERS.update({"flow_euler": flow_euler, "flow_heun": flow_heun, "flow_rk45": flow_rk45})
# the arguments every core takes that are not options of a config
_CALL_ARGS = {"denoiser", "x_T", "steps", "generator", "callback", "progress", "project"}


def _options_of(name: str) -> dict[str, Any]:
    """``{option: default}`` of sampler ``name``'s core function."""
    params = inspect.signature(SAMPLERS[name].core).parameters
    return {k: p.default for k, p in params.items() if k not in _CALL_ARGS}


# Settings every sampler takes, applied to the denoiser before the sampler runs (not options of a core):
# Imagen's x̂₀ thresholding (Saharia et al. 2022, §2.3), on top of any guidance.
SPEC_SETTINGS: dict[str, Any] = {"threshold": "none", "threshold_percentile": 99.5}


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    threshold = settings.get("threshold", SPEC_SETTINGS["threshold"])
    if threshold not in THRESHOLDS:
        raise ConfigError(f"sampler.threshold={threshold!r} is not one of {list(THRESHOLDS)} (Imagen §2.3: static clips x0-hat "
                          "to the data range, dynamic rescales by a per-sample percentile)")
    percentile = settings.get("threshold_percentile", SPEC_SETTINGS["threshold_percentile"])
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise ConfigError(f"sampler.threshold_percentile={percentile!r} must be a number in (0, 100] (percent; Imagen: 99.5, "
                          "imagen-pytorch / DeepFloyd IF: 95)")
    return {k: v for k, v in settings.items() if v != SPEC_SETTINGS[k]}  # only what differs from the defaults


def _check_steps(steps) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"sampler.steps={steps!r} must be a positive integer (the NFE budget) or null (the recipe's own)")
    return steps


class SamplerSpec:
    """A sampler and its settings.

    Args:
        name: one of :data:`SAMPLERS` (``ddpm``, ``ddim``, ``pc``, ``ode``, ``annealed_langevin``).
        steps: the NFE budget (network evaluations per sample; ``None``: the recipe's own — all T
            steps of a DDPM chain, the SDE's N, L · n_steps_each Langevin updates). What it means
            for each sampler, and the grid it walks, is :meth:`plan`'s answer.
        options: the sampler's own options (``eta``, ``variance``, ``predictor`` …); an unknown one is
            a :class:`~diffzoo.errors.ConfigError` naming it and the valid ones. Every sampler also
            takes the settings of :data:`SPEC_SETTINGS`: ``threshold`` (``none`` | ``static`` |
            ``dynamic``) and ``threshold_percentile`` — Imagen's thresholding of x̂₀ (§2.3), applied
            to the (guided) denoiser before the sampler runs
            (:func:`~diffzoo.denoisers.x0_threshold`).
    """

    def __init__(self, name: str, steps: int | None = None, **options):
        if name not in SAMPLERS:
            raise ConfigError(f"sampler name {name!r} is not one of {list(SAMPLERS)}")
        settings = _check_settings({k: v for k in SPEC_SETTINGS if k in options and (v := options.pop(k)) is not None})
        valid = _options_of(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"sampler.{unknown[0]} is not an option of sampler={name}; "
                              f"valid: {['steps', *sorted(valid), *SPEC_SETTINGS]}")
        self.name = name
        self.steps = _check_steps(steps)
        self.options = dict(options)
        self.settings = settings
        self.fn = SAMPLERS[name]

    # ------------------------------------------------------------------ construction
    @classmethod
    def of(cls, sampler) -> "SamplerSpec":
        """A spec from a spec, a name (``"ddim"``: its defaults), a config mapping (``{"name": …}`` or a
        stored ``{"_target_": …}``), a sampler function, or a ``functools.partial`` of one (what
        checkpoints of earlier versions store)."""
        if isinstance(sampler, SamplerSpec):
            return sampler
        if isinstance(sampler, str):  # a name: that sampler with its defaults
            return cls(sampler)
        if callable(sampler) and sampler in SAMPLERS.values():  # the bare function: its defaults
            return cls(next(n for n, fn in SAMPLERS.items() if fn is sampler))
        if isinstance(sampler, functools.partial):
            names = {fn: n for n, fn in SAMPLERS.items()}
            if sampler.func not in names:
                raise ConfigError(f"sampler {getattr(sampler.func, '__name__', sampler.func)!r} is not one of {list(SAMPLERS)}")
            keywords = dict(sampler.keywords)
            return cls(names[sampler.func], keywords.pop("steps", None), **keywords)
        if isinstance(sampler, dict):
            data = {k: v for k, v in sampler.items() if k not in ("_target_", "_partial_")}
            target = str(sampler.get("_target_", ""))
            if "name" not in data:  # a stored _partial_ config: diffzoo.samplers.<function>
                by_function = {f"diffzoo.samplers.{fn.__name__}": n for n, fn in SAMPLERS.items()}
                if target not in by_function:
                    raise ConfigError(f"sampler config {target or data!r} names no sampler of {list(SAMPLERS)}")
                data["name"] = by_function[target]
            return cls(**data)
        raise ConfigError(f"sampler must be a SamplerSpec, a sampler config or a partial of a sampler, got {type(sampler).__name__}")

    @classmethod
    def resolve(cls, base: "SamplerSpec", override) -> "SamplerSpec":
        """The sampler a command runs: ``base`` (the checkpoint's own) unless ``override`` says
        otherwise — a config with ``name`` / ``_target_`` (``sampler=ddim``) replaces it, a mapping of
        settings (``sampler.steps=50``) changes those settings of ``base``; ``None`` / empty keeps it."""
        if override is None:
            return base
        if isinstance(override, (SamplerSpec, functools.partial)):
            return cls.of(override)
        override = dict(override)
        if "name" in override or "_target_" in override:
            return cls.of(override)
        given = {k: v for k, v in override.items() if v is not None}
        return base.with_options(**given) if given else base

    def with_steps(self, steps: int | None) -> "SamplerSpec":
        """The same sampler with another NFE budget."""
        return SamplerSpec(self.name, steps, **self.options, **self.settings)

    def with_options(self, **overrides) -> "SamplerSpec":
        """The same sampler with some settings replaced (``steps`` included)."""
        merged = {"steps": self.steps, **self.options, **self.settings, **overrides}
        return SamplerSpec(self.name, **merged)

    # ------------------------------------------------------------------ what it will do
    def plan(self, process) -> SamplingPlan:
        """The grid this sampler walks on ``process`` and its NFE (``None`` for the adaptive ODE);
        raises ``ValueError`` naming ``sampler.*`` when the settings do not fit the process."""
        return self.fn.plan(process, self.steps, **self.options)

    @property
    def adaptive(self) -> bool:
        """True for a solver that chooses its own steps (the probability-flow ODE, ``flow_rk45``)."""
        return self.name == "ode" or bool(getattr(self.fn, "adaptive", False))

    @property
    def takes_mean_shift(self) -> bool:
        """Only ancestral sampling has a mean to shift (ADM's classifier guidance, Algorithm 1)."""
        return bool(getattr(self.fn, "takes_mean_shift", False))

    def describe(self) -> dict[str, Any]:
        """``{"name", "steps", **options}`` with the defaults filled in (for metric records and summaries)."""
        return {"name": self.name, "steps": self.steps, **_options_of(self.name), **self.options, **self.settings}

    def to_config(self) -> dict[str, Any]:
        """The Hydra config that rebuilds this spec."""
        return {"_target_": "diffzoo.samplers.SamplerSpec", "name": self.name, "steps": self.steps, **self.options, **self.settings}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in {**self.options, **self.settings}.items())
        return f"SamplerSpec({self.name!r}, steps={self.steps}{', ' + opts if opts else ''})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SamplerSpec) and ((self.name, self.steps, self.options, self.settings)
                                                   == (other.name, other.steps, other.options, other.settings))

    # ------------------------------------------------------------------ running it
    def __call__(self, denoiser, x_T: torch.Tensor, generator=None, callback: Callable | None = None,
                 progress: bool = False) -> torch.Tensor:
        """Sample from ``denoiser`` starting at ``x_T`` ``[B, …]`` → ``[B, …]`` (model coordinates)."""
        if denoiser.mean_shift_form and not self.takes_mean_shift:
            raise ConfigError(f"guidance.form=mean is ADM's ancestral mean shift (Algorithm 1) and needs sampler=ddpm, "
                              f"not sampler={self.name}; use guidance.form=eps with this sampler")
        settings = {**SPEC_SETTINGS, **self.settings}
        threshold = x0_threshold(settings["threshold"], denoiser.data_range, settings["threshold_percentile"])
        if threshold is not None:  # on top of classifier-free guidance, below classifier guidance (denoisers/base.py)
            denoiser = denoiser.with_x0_transform(threshold)
        return self.fn.core(denoiser, x_T, self.steps, **self.options, generator=generator, callback=callback,
                            progress=progress)
