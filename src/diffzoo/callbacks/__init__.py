"""Training callbacks: sample grids, in-training evaluation (FID / KID / …), the step progress bar, throughput / data-wait timing."""

from .evaluation import Evaluation
from .nan_guard import NanGuard, NonFiniteLossError
from .preemption import Preemption
from .progress import StepProgressBar
from .sample_grid import SampleGrid
from .throughput import Throughput

__all__ = ["Evaluation", "NanGuard", "NonFiniteLossError", "Preemption", "SampleGrid", "StepProgressBar", "Throughput"]
