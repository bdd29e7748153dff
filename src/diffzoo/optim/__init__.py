"""Optimizers and step-size schedules: SGLD (Welling & Teh 2011), weight EMA, LR warm-up."""

from .ema import EMA
from .sgld import SGLD, PolynomialDecay, PolynomialDecayLR
from .warmup import linear_warmup

__all__ = ["SGLD", "PolynomialDecay", "PolynomialDecayLR", "EMA", "linear_warmup"]
