"""Denoising networks: plain ``nn.Module``s ``f(x, t, y=None)`` that know nothing of schedules."""

from .embeddings import GaussianFourierEmbedding, sinusoidal_embedding
from .mlp import TimeMLP
from .ncsn import NCSNMLP
from .ncsn_refinenet import CondInstanceNorm2dPlus, NCSNRefineNet
from .ncsnpp import NCSNpp
from .classifier import AttentionPool2d, NoisyClassifier
from .unet import AttentionBlock, ResBlock, UNet
from .text import GlideTextTransformer, MiniLMEncoder, T5Encoder, TextEncoder, TextEncoding

__all__ = [
    "UNet",
    "NoisyClassifier",
    "AttentionPool2d",
    "ResBlock",
    "AttentionBlock",
    "TimeMLP",
    "NCSNMLP",
    "NCSNRefineNet",
    "NCSNpp",
    "CondInstanceNorm2dPlus",
    "sinusoidal_embedding",
    "GaussianFourierEmbedding",
    "TextEncoder",
    "TextEncoding",
    "GlideTextTransformer",
    "MiniLMEncoder",
    "T5Encoder",
]
