"""Metric names that carry their setup, and the record logged next to every number.

A name says what was measured, in which feature space and on how many samples:
``fid50k`` (Inception, exactly 50 000 samples), ``fid10k``, ``kid10k``, ``is50k``,
``fid_digits2k`` (the digits classifier's feature space, 2000 samples), ``swd1k`` (toy data),
``nll_ode_val256`` (bits/dim of 256 held-out ``val`` images: the split takes the space's place).
A metric that reports several numbers names each after its part: ``precision_recall`` gives
``precision_digits2k`` and ``recall_digits2k``.
The count is the exact number of generated samples — written ``<k>k`` only when it is a whole
number of thousands — so a number from fewer than 50 000 samples can never be called ``fid50k``.
Everything else that changes the number (sampler, NFE, η, guidance scale, EMA or raw weights,
reference statistics and their content hash) goes into :class:`MetricRecord`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["IMAGE_METRICS", "TOY_METRICS", "LIKELIHOOD_METRICS", "TRAJECTORY_METRICS", "METRICS", "METRIC_PARTS", "INCEPTION_SPACE", "sample_count_tag", "metric_name", "MetricRecord", "check_metrics"]

IMAGE_METRICS = ("fid", "kid", "is", "precision_recall")  # need a feature extractor
TOY_METRICS = ("swd", "mmd", "loglik")  # 2-D data: sliced Wasserstein, MMD, exact log-likelihood
LIKELIHOOD_METRICS = ("nll_ode", "nll_vlb")  # held-out images, bits/dim: probability-flow ODE | variational bound
TRAJECTORY_METRICS = ("straightness",)  # measured along the ODE paths, on images and points alike (Liu et al. 2022)
METRICS = IMAGE_METRICS + TOY_METRICS + LIKELIHOOD_METRICS + TRAJECTORY_METRICS
METRIC_PARTS = {"precision_recall": ("precision", "recall")}  # metrics that report several numbers, one name each
INCEPTION_SPACE = "inception"  # the standard space: its names carry no space tag (fid50k)


def check_metrics(metrics, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Validate a list of metric names against ``allowed``; the error lists the valid ones."""
    metrics = tuple(str(m) for m in metrics)
    bad = [m for m in metrics if m not in allowed]
    if bad or not metrics:
        raise ValueError(f"metrics={list(metrics)}: {bad or 'empty'} not available for {what}; choose from {list(allowed)}")
    return metrics


def sample_count_tag(n: int) -> str:
    """``50000 → "50k"``, ``10000 → "10k"``, ``2500 → "2500"``, ``37 → "37"`` (never rounded)."""
    if n <= 0:
        raise ValueError(f"sample count must be positive, got {n}")
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def metric_name(metric: str, n: int, feature_space: str | None = INCEPTION_SPACE, part: str | None = None) -> str:
    """``metric_name("fid", 50000) → "fid50k"``; ``metric_name("fid", 2000, "digits") →
    "fid_digits2k"``; toy metrics pass ``feature_space=None`` (``"swd1k"``). A metric of
    :data:`METRIC_PARTS` needs the ``part`` to name: ``metric_name("precision_recall", 2000,
    "digits", part="recall") → "recall_digits2k"``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(METRICS)}")
    parts = METRIC_PARTS.get(metric, ())
    if (part is None) != (not parts) or (part is not None and part not in parts):
        raise ValueError(f"metric {metric!r} names {'one of its parts ' + str(list(parts)) if parts else 'no parts'}, got part={part!r}")
    space = "" if feature_space in (None, INCEPTION_SPACE) else f"_{feature_space}"
    return f"{part or metric}{space}{sample_count_tag(n)}"


@dataclass
class MetricRecord:
    """One logged number and everything needed to compare it with another.

    Attributes:
        name: the full name (``fid_digits2k``); ``value`` its value, ``std`` a spread if defined
            (KID / IS over subsets / splits).
        metric: ``fid`` | ``kid`` | ``is`` | ``precision_recall`` | ``swd`` | ``mmd`` | ``loglik`` |
            ``nll_ode`` | ``nll_vlb`` | ``straightness`` (the metric selected; ``extra["part"]`` says which of its
            numbers a record holds); ``n``: generated samples (scored data examples for ``nll_*``).
        feature_space: ``inception``, a classifier's data set (``digits``), or ``None`` (toy data).
        extractor: identity of the feature extractor (weights file / hash); ``backend``: who computed it.
        sampler, nfe, eta, guidance_scale, weights: how the samples were drawn (``weights``:
            ``ema`` | ``raw``); ``eta`` / ``guidance_scale`` are ``None`` where they do not apply;
            ``sampler_options``: every setting of the sampler (its NFE budget ``steps``, ``step_norm``
            of the PC corrector, …).
        reference: ``{"split", "n", "hash", "resize"}`` of the reference statistics (``hash``: content hash).
        seed, step: the evaluation seed and the model's training step.
        extra: anything else a metric reports (KID subset size, IS splits, precision / recall's k, …).
    """

    name: str
    value: float
    metric: str
    n: int
    feature_space: str | None = None
    extractor: str | None = None
    backend: str | None = None
    sampler: str | None = None
    nfe: int | None = None
    eta: float | None = None
    guidance_scale: float | None = None
    weights: str = "ema"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    step: int | None = None
    std: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)
