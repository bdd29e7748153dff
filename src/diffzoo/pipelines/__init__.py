"""Pipelines: several trained models sampled one after another (a cascade: a base model and its
super-resolution stages). Layer 6: they load checkpoints (``lit``) and score outputs (``metrics``)."""

from .cascade import AUGMENTATION_MODES, CascadeBatch, Stage, check_stages, run_cascade

__all__ = ["AUGMENTATION_MODES", "CascadeBatch", "Stage", "check_stages", "run_cascade"]
