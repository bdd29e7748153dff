"""One evaluation: draw exactly N samples from a model (over all processes), extract features,
gather them, compare with the reference, and return named records. Used by ``diffzoo-eval``
and by the :class:`~diffzoo.callbacks.evaluation.Evaluation` training callback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ..utils.images import to_uint8
from .backends import BACKENDS, get_backend
from .data import SPLITS, instantiate_datamodule, load_split
from .distributed import SHARD_MODES, all_reduce_max, draw_samples, gather_by_index, rank_zero_first
from .features import EXTRACTOR_KINDS, FeatureExtractor, make_extractor
from .likelihood_eval import LikelihoodSetup, likelihood_records
from .straightness import straightness_records
from .naming import (IMAGE_METRICS, LIKELIHOOD_METRICS, METRIC_PARTS, METRICS, TOY_METRICS, TRAJECTORY_METRICS, MetricRecord, check_metrics,
                     metric_name)
from .precision_recall import precision_recall
from .reference import ReferenceStats, reference_statistics
from .toy import mean_log_likelihood, mmd_rbf, sliced_wasserstein

__all__ = ["EvalSetup", "EvalInputs", "EvalResult", "default_metrics", "sampler_info", "prepare_evaluation", "run_evaluation",
           "matched_reference", "precision_recall_vs_reference"]


@dataclass
class EvalSetup:
    """What to measure and how to sample (the knobs of ``diffzoo-eval`` / the callback).

    ``n`` samples, seeded per global index by ``seed``, drawn ``batch_size`` at a time with the
    EMA (or raw) weights and ``sampler`` (a :class:`~diffzoo.samplers.SamplerSpec`; ``None``: the
    module's own). Image
    metrics use the ``extractor`` (auto | inception | classifier) and compare with the first
    ``reference_n`` (all: ``None``) images of ``reference_split``; toy metrics compare with the
    held-out split; likelihood metrics (``nll_ode`` / ``nll_vlb``) score held-out images as
    ``likelihood`` says. ``precision_recall`` uses ``pr_k`` nearest neighbours and as many
    reference rows as samples (:func:`matched_reference`). ``gather_images`` also collects the
    uint8 samples (to save or compare).
    """

    n: int
    metrics: tuple[str, ...] | None = ("fid", "kid", "is")
    seed: int = 0
    batch_size: int = 256
    use_ema: bool = True
    sampler: Any = None
    extractor: str = "auto"
    backend: str = "torch-fidelity"
    reference_split: str = "train"
    reference_n: int | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    pr_k: int = 3
    shard: str = "contiguous"
    swd_projections: int = 256
    mmd_bandwidth: float = 1.0
    classifier_epochs: int | None = None
    keep_preview: int = 64
    gather_images: bool = False
    progress: bool = False
    likelihood: LikelihoodSetup = field(default_factory=LikelihoodSetup)

    def __post_init__(self):
        if self.n < 2 or self.batch_size < 1:
            raise ValueError(f"evaluation needs n >= 2 and batch_size >= 1, got n={self.n}, batch_size={self.batch_size}")
        choices = {"extractor": EXTRACTOR_KINDS, "backend": BACKENDS, "shard": SHARD_MODES, "reference_split": SPLITS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r} is not one of {list(allowed)}")
        self.metrics = check_metrics(self.metrics, METRICS, "any data") if self.metrics else None
        if self.pr_k < 1 or (self.metrics and "precision_recall" in self.metrics and self.n <= self.pr_k):
            raise ValueError(f"precision_recall needs pr_k >= 1 and n > pr_k, got pr_k={self.pr_k}, n={self.n}")


@dataclass
class EvalResult:
    """Records of one evaluation (identical on every process), and samples to look at.

    ``preview``: this process's samples with the lowest global indices (up to ``keep_preview``,
    float in ``[-1, 1]``); ``images``: all ``N`` uint8 samples in index order when gathered.
    """

    records: list[MetricRecord]
    n: int
    nfe: int
    preview: torch.Tensor
    images: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """``{name: value}`` plus ``{name}_std`` where a spread exists."""
        out: dict[str, float] = {}
        for r in self.records:
            out[r.name] = r.value
            if r.std is not None:
                out[f"{r.name}_std"] = r.std
        return out


def sampler_info(module, sampler=None) -> dict[str, Any]:
    """How ``module`` samples with ``sampler`` (default its own): the sampler's name, η, σ̂, the NFE
    its plan spends (``steps``; ``None`` for the adaptive ODE) and all its settings (``options``)."""
    from ..samplers import SamplerSpec

    spec = SamplerSpec.of(sampler) if sampler is not None else module.sampler
    options = spec.describe()
    return {
        "sampler": spec.name,
        "eta": options.get("eta"),
        "sigma_hat": bool(options.get("sigma_hat", False)),
        "guidance_scale": None,
        "steps": spec.plan(module.schedule).nfe,
        "options": options,
    }


def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Concatenate this process's parts; a process that drew no batch has an empty ``[0]`` tensor
    (:func:`gather_by_index` fills in the trailing shape from the others)."""
    return torch.cat(parts) if parts else torch.empty(0, dtype=dtype)


@dataclass
class EvalInputs:
    """What an evaluation compares against, prepared once (and reusable across evaluations):
    the data module, the resolved ``metrics``, the feature extractor and the reference statistics
    (``None`` for toy data / when no FID, KID or precision / recall is asked for)."""

    datamodule: Any
    metrics: tuple[str, ...]
    extractor: FeatureExtractor | None = None
    reference: ReferenceStats | None = None


def default_metrics(images_data: bool, datamodule) -> tuple[str, ...]:
    """``(fid, kid)`` for images; ``(swd, mmd)`` for points, plus ``loglik`` if the density is known
    (likelihood metrics are opt-in: they cost one ODE solve or T network calls per batch)."""
    if images_data:
        return ("fid", "kid")
    has_density = hasattr(getattr(datamodule, "distribution", None), "log_prob")
    return ("swd", "mmd", "loglik") if has_density else ("swd", "mmd")


def prepare_evaluation(data_shape, data_cfg: Mapping[str, Any], setup: EvalSetup, cache_dir, device="cpu", datamodule=None) -> EvalInputs:
    """Validate the metrics for the data, build the extractor (training a classifier if needed;
    Inception weights missing offline fail here) and load / compute the reference statistics.
    Every process must call it; rank 0 fills the caches first."""
    images_data = len(data_shape) == 3
    dm = datamodule if datamodule is not None else instantiate_datamodule(data_cfg)
    allowed = (IMAGE_METRICS + LIKELIHOOD_METRICS if images_data else TOY_METRICS) + TRAJECTORY_METRICS
    metrics = check_metrics(setup.metrics or default_metrics(images_data, dm), allowed, "image data" if images_data else "point data")
    inputs = EvalInputs(datamodule=dm, metrics=metrics)
    if images_data and set(IMAGE_METRICS) & set(metrics):
        inputs.extractor = rank_zero_first(lambda: make_extractor(setup.extractor, data_cfg, tuple(data_shape), dm.num_classes is not None,
                                                                  cache_dir, device=device, epochs=setup.classifier_epochs))
        if {"fid", "kid", "precision_recall"} & set(metrics):
            inputs.reference = rank_zero_first(lambda: reference_statistics(
                inputs.extractor, data_cfg, cache_dir, setup.reference_split, setup.reference_n, datamodule=dm))
    return inputs


def run_evaluation(module, data_cfg: Mapping[str, Any], setup: EvalSetup, cache_dir, datamodule=None, step: int | None = None,
                   inputs: EvalInputs | None = None) -> EvalResult:
    """Evaluate ``module`` (a ``DiffusionModule`` or a ``ScoreModule``) against the data of
    ``data_cfg`` as ``setup`` says (``inputs``: from :func:`prepare_evaluation`, else prepared
    here). Every process of the default process group must call it; each draws its share of the
    ``N`` samples (and scores its share of the held-out examples for likelihood metrics) and all
    get the same records back. With only likelihood metrics nothing is sampled (``nfe`` 0)."""
    if inputs is None:
        inputs = prepare_evaluation(module.data_shape, data_cfg, setup, cache_dir, module.device, datamodule)
    info = sampler_info(module, setup.sampler)
    sample_metrics = tuple(m for m in inputs.metrics if m not in LIKELIHOOD_METRICS + TRAJECTORY_METRICS)
    records, nfe, preview, all_images = [], 0, torch.empty(0, *module.data_shape), None
    if sample_metrics:
        records, nfe, preview, all_images = _sample_records(module, setup, inputs, sample_metrics, info, step)
    common = dict(seed=setup.seed, use_ema=setup.use_ema, step=step, shard=setup.shard, progress=setup.progress)
    records += likelihood_records(module, inputs.metrics, inputs.datamodule, setup.likelihood, **common)
    if "straightness" in inputs.metrics:
        records += straightness_records(module, setup.n, batch_size=setup.batch_size, **common)
    return EvalResult(records=records, n=setup.n, nfe=nfe, preview=preview, images=all_images, info=info)


def _sample_records(module, setup: EvalSetup, inputs: EvalInputs, metrics: tuple[str, ...], info: dict, step):
    """Draw this process's samples, extract / gather what the sample metrics need and compute them."""
    images_data, extractor = inputs.extractor is not None, inputs.extractor
    rows, logits, indices, previews, images, nfe = [], [], [], [], [], 0
    batches = draw_samples(module, setup.n, setup.seed, setup.batch_size, setup.use_ema, mode=setup.shard, progress=setup.progress,
                           sampler=setup.sampler)
    for batch in batches:
        nfe = max(nfe, batch.nfe)
        indices.append(batch.indices)
        previews.append(batch.x[batch.indices < setup.keep_preview].float().cpu())
        if images_data:
            u8 = to_uint8(batch.x)
            feats = extractor(u8)
            rows.append(feats.features.cpu())
            logits.append(feats.logits.cpu())
            if setup.gather_images:
                images.append(u8)
        else:
            rows.append(batch.x.float().cpu())
    idx = _cat(indices, torch.long)
    nfe = all_reduce_max(nfe)
    common = dict(n=setup.n, weights=module.weights_label(setup.use_ema), seed=setup.seed, step=step, nfe=nfe,
                  sampler=info["sampler"], eta=info["eta"], guidance_scale=info["guidance_scale"],
                  sampler_options=info["options"])
    gathered = gather_by_index(_cat(rows, torch.float32), idx, setup.n)
    if images_data:
        all_logits = gather_by_index(_cat(logits, torch.float32), idx, setup.n) if "is" in metrics else None
        records = _image_records(inputs, metrics, gathered, all_logits, setup, common, device=module.device)
    else:
        records = _toy_records(inputs, metrics, gathered, setup, common)
    all_images = gather_by_index(_cat(images, torch.uint8), idx, setup.n) if images_data and setup.gather_images else None
    preview = torch.cat(previews) if previews else torch.empty(0, *module.data_shape)
    return records, nfe, preview, all_images


def matched_reference(reference: ReferenceStats, n: int, seed: int) -> torch.Tensor:
    """``min(n, N_ref)`` reference feature rows for precision / recall: all of them when there are at
    most ``n``, else ``n`` rows drawn without replacement by a generator seeded with ``seed``
    (in index order). k-NN balls shrink as a set grows, so the real and generated sets are
    compared at equal size, as in Kynkäänniemi et al. 2019 (50 000 each); a random draw, not the
    first ``n`` rows, because a split may be ordered by class."""
    if reference.n <= n:
        return reference.features
    g = torch.Generator().manual_seed(seed)
    return reference.features[torch.randperm(reference.n, generator=g)[:n].sort().values]


def precision_recall_vs_reference(features: torch.Tensor, reference: ReferenceStats, k: int, seed: int, device=None) -> tuple[dict[str, float], dict]:
    """Improved precision / recall (:func:`~diffzoo.metrics.precision_recall.precision_recall`) of
    generated ``features`` ``[n, d]`` against :func:`matched_reference` rows, computed on ``device``;
    returns the values and what goes into the records' ``extra`` (k and the set sizes)."""
    real = matched_reference(reference, features.shape[0], seed)
    values = precision_recall(real, features, k=k, device=device)
    return values, {"k": k, "reference_rows": int(real.shape[0]), "reference_seed": seed, "distance": "euclidean, float64"}


def _image_records(inputs: EvalInputs, metrics, features, logits, setup: EvalSetup, common, device=None) -> list[MetricRecord]:
    backend = get_backend(setup.backend)
    space, ref = inputs.extractor.space, inputs.reference
    base = dict(common, feature_space=space, extractor=inputs.extractor.identity, backend=backend.name)
    records = []
    for m in metrics:
        if m == "precision_recall":  # diffzoo's own k-NN maths whatever the backend (two records)
            values, extra = precision_recall_vs_reference(features, ref, setup.pr_k, setup.seed, device)
            for part in METRIC_PARTS[m]:
                records.append(MetricRecord(name=metric_name(m, setup.n, space, part=part), value=values[part], metric=m,
                                            reference=ref.describe(), extra={"part": part, **extra}, **dict(base, backend="diffzoo")))
            continue
        name = metric_name(m, setup.n, space)
        if m == "fid":
            records.append(MetricRecord(name=name, value=backend.fid(features, ref), metric=m, reference=ref.describe(), **base))
        elif m == "kid":
            r = backend.kid(features, ref, setup.kid_subsets, setup.kid_subset_size, setup.seed)
            size = min(setup.kid_subset_size, features.shape[0], ref.n)
            records.append(MetricRecord(name=name, value=r.mean, std=r.std, metric=m, reference=ref.describe(),
                                        extra={"subsets": setup.kid_subsets, "subset_size": size}, **base))
        elif m == "is":
            splits = min(setup.is_splits, setup.n)
            r = backend.inception_score(logits, splits)
            records.append(MetricRecord(name=name, value=r.mean, std=r.std, metric=m, extra={"splits": splits}, **base))
    return records


def _toy_records(inputs: EvalInputs, metrics, points, setup: EvalSetup, common) -> list[MetricRecord]:
    records, dm = [], inputs.datamodule
    held_out = load_split(dm, "val").x if {"swd", "mmd"} & set(metrics) else None
    ref = {"split": "val", "n": None if held_out is None else int(held_out.shape[0])}
    for m in metrics:
        name = metric_name(m, setup.n, None)
        if m == "swd":
            g = torch.Generator().manual_seed(setup.seed)
            value = sliced_wasserstein(points, held_out, setup.swd_projections, generator=g)
            records.append(MetricRecord(name=name, value=value, metric=m, reference=ref, extra={"projections": setup.swd_projections, "p": 2}, **common))
        elif m == "mmd":
            value = mmd_rbf(points, held_out, setup.mmd_bandwidth)
            records.append(MetricRecord(name=name, value=value, metric=m, reference=ref, extra={"kernel": "rbf", "bandwidth": setup.mmd_bandwidth}, **common))
        elif m == "loglik":
            dist = getattr(dm, "distribution", None)
            if dist is None or not hasattr(dist, "log_prob"):
                raise ValueError(f"metrics=[loglik] needs data with a known density; {dm.name!r} has none")
            records.append(MetricRecord(name=name, value=mean_log_likelihood(points, dist.log_prob), metric=m,
                                        extra={"unit": "nats", "density": type(dist).__name__}, **common))
    return records
