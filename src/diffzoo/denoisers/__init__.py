"""The denoiser core: one model-function contract for every sampler, guidance method and metric
(``docs/ARCHITECTURE.md``, "Denoiser core").

* :class:`Denoiser` / :class:`Prediction` — a network read through its forward process: x̂₀, ε, score, v.
* :class:`DenoiserWrapper` — denoiser → denoiser (x̂₀ transforms, bound conditions; the base of
  :mod:`diffzoo.guidance`).
* :class:`ClipX0`, :class:`DynamicThreshold` — Imagen's static and dynamic thresholding of x̂₀.
* :func:`as_sde_denoiser` — a denoiser on the SDE its process discretises (PC / ODE samplers).
* :func:`mixture_denoiser` — exact denoisers of Gaussian mixtures (tests against closed forms).
* :func:`eps_denoiser`, :func:`score_denoiser` — the earlier ``eps_fn`` / ``score_fn`` call forms.
"""

from .base import PREDICTIONS, Bound, Denoiser, DenoiserWrapper, Prediction, X0Transformed
from .exact import NULL_LABEL, mixture_denoiser
from .legacy import EpsFnView, ScoreFnView, eps_denoiser, score_denoiser
from .transforms import THRESHOLDS, ClipX0, DynamicThreshold, x0_threshold


def as_sde_denoiser(denoiser: Denoiser) -> Denoiser:
    """``denoiser`` read on the continuous-time SDE of its process (the process's
    :meth:`~diffzoo.schedules.process.GaussianProcess.continuous_view`): itself for a Score SDE
    model; for a DDPM model with a linear β table, the same network on the VP SDE that table
    discretises, evaluated at step ``(T − 1)·u`` at SDE time ``u`` (Score SDE App. B–C). Raises
    ``ValueError`` naming the process when it has no such SDE."""
    sde, t_map = denoiser.process.continuous_view()
    return denoiser if t_map is None else denoiser.retimed(sde, t_map)


__all__ = [
    "PREDICTIONS", "Denoiser", "Prediction", "DenoiserWrapper", "X0Transformed", "Bound", "ClipX0",
    "DynamicThreshold", "THRESHOLDS", "x0_threshold",
    "as_sde_denoiser", "mixture_denoiser", "NULL_LABEL", "eps_denoiser", "score_denoiser", "EpsFnView", "ScoreFnView",
]
