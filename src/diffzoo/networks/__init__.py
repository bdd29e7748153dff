"""Denoising networks: plain ``nn.Module``s ``f(x, t, y=None)`` that know nothing of schedules."""

from .embeddings import GaussianFourierEmbedding, sinusoidal_embedding
from .mlp import TimeMLP
from .ncsn import CondInstanceNorm2dPlus, NCSNMLP, NCSNRefineNet
from .unet import AttentionBlock, ResBlock, UNet

__all__ = [
    "UNet",
    "ResBlock",
    "AttentionBlock",
    "TimeMLP",
    "NCSNMLP",
    "NCSNRefineNet",
    "CondInstanceNorm2dPlus",
    "sinusoidal_embedding",
    "GaussianFourierEmbedding",
]
