"""What a network predicts and how that becomes the reverse process p_θ(x_{t−1} | x_t)."""

from .reverse import ReverseMoments, VARIANCE_KINDS, p_mean_variance, split_model_output

__all__ = ["ReverseMoments", "VARIANCE_KINDS", "p_mean_variance", "split_model_output"]
