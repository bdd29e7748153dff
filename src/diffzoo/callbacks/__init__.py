"""Training callbacks: sample grids, in-training evaluation (FID / KID / …), the step progress bar."""

from .evaluation import Evaluation
from .progress import StepProgressBar
from .sample_grid import SampleGrid

__all__ = ["Evaluation", "SampleGrid", "StepProgressBar"]
