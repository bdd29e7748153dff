"""LightningModules: the single-network diffusion model and (later) the multi-stage ones."""

from .build import build_module, load_module
from .diffusion import DiffusionModule

__all__ = ["DiffusionModule", "build_module", "load_module"]
