"""Training callbacks: sample grids, in-training evaluation (FID / KID / …), the step progress bar, throughput / data-wait timing."""

from .checkpoint_io import AtomicCheckpointIO
from .evaluation import Evaluation
from .nan_guard import NanGuard, NonFiniteLossError
from .preemption import Preemption
from .progress import StepProgressBar
from .sample_grid import SampleGrid
from .throughput import Throughput

__all__ = ["AtomicCheckpointIO", "Evaluation", "NanGuard", "NonFiniteLossError", "Preemption", "SampleGrid", "StepProgressBar", "Throughput"]
