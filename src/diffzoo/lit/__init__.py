"""LightningModules: the single-network diffusion model and (later) the multi-stage ones."""

from .build import build_module, load_module
from .classifier import NoisyClassifierModule
from .diffusion import DiffusionModule
from .sde_classifier import SDEClassifierModule

__all__ = ["DiffusionModule", "NoisyClassifierModule", "SDEClassifierModule", "build_module", "load_module"]
