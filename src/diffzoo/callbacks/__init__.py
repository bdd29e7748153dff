"""Training callbacks: sample grids, the step progress bar."""

from .progress import StepProgressBar
from .sample_grid import SampleGrid

__all__ = ["SampleGrid", "StepProgressBar"]
