"""LightningModules: the diffusion and score models (generative modules with a denoiser), the
noise-aware classifiers, the SD15 model and SGLD; building them from configs and checkpoints."""

from .base import DiffzooModule, GenerativeModule
from .build import build_module, load_module
from .classifier import NoisyClassifierModule
from .diffusion import DiffusionModule
from .flow import FlowModule
from .guidance_loading import check_guidance_fits, load_classifier_guidance, load_clip_guidance
from .score import ScoreModule
from .sde_classifier import SDEClassifierModule
from .inpainting import TextInpaintingModule
from .text_diffusion import TextDiffusionModule

__all__ = ["TextDiffusionModule", "TextInpaintingModule", "DiffzooModule", "GenerativeModule", "DiffusionModule", "ScoreModule", "FlowModule", "NoisyClassifierModule",
           "SDEClassifierModule", "build_module", "load_module", "load_classifier_guidance", "load_clip_guidance", "check_guidance_fits"]
