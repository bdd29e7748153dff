"""Likelihood metrics of an evaluation: NLL in bits/dim of held-out data, by the model's own route.

* ``nll_ode`` — the probability-flow ODE with the Hutchinson trace estimator and uniform
  dequantisation (Score SDE §4.3 and App. D; :func:`diffzoo.metrics.ode_nll.ode_nll`), for a
  score model with an SDE (:class:`~diffzoo.lit.score.ScoreModule`) and for a discrete DDPM
  ε-model with a linear β table, read as a model of the VP SDE that table discretises
  (Score SDE App. B–C; :meth:`~diffzoo.schedules.DiscreteSchedule.as_vpsde`). Score SDE's
  reference code divides ε by the *discrete* σ of a discretely trained model; the continuous σ(t)
  used here gives the same bits/dim to Monte-Carlo precision with far fewer ODE steps.
* ``nll_vlb`` — a discrete-time model (:class:`~diffzoo.lit.diffusion.DiffusionModule`): the
  variational bound ``L_T + Σ L_{t−1} + L_0`` (DDPM eq. 5, Improved DDPM eqs. 4–6;
  :func:`diffzoo.metrics.vlb.vlb_bits_per_dim`), a bound: on the same DDPM model it is larger
  than the ODE's value (Score SDE Table 2: ≤ 3.70 vs 3.28 bits/dim on CIFAR-10). x̂₀ is clipped
  in the reverse mean by default, as improved-diffusion's ``image_nll.py`` (``clip_denoised=True``)
  whose numbers it is compared with; ``nll.clip_x0=false`` gives the unclipped bound.

Both score the first ``n`` images of a split, quantised to 8 bits as a PNG holds them
(:func:`~diffzoo.metrics.data.load_split`). Example ``i`` draws its dequantisation noise,
Hutchinson probes and ``x_t`` noise from generator ``(seed, "nll", i)``; the examples are cut
into global batches shared out over the processes like the samples of
:func:`~diffzoo.metrics.distributed.draw_samples`, so 1 or N processes give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..utils.progress import track
from ..utils.random import per_sample_generators
from .data import SPLITS, load_split
from .distributed import all_reduce_max, gather_by_index, rank_and_world_size, shard_batches
from .naming import LIKELIHOOD_METRICS, MetricRecord, metric_name

__all__ = ["LikelihoodSetup", "likelihood_records", "HUTCHINSON_KINDS", "VLB_VARIANCES"]

HUTCHINSON_KINDS = ("rademacher", "gaussian", "exact")
VLB_VARIANCES = ("fixedlarge", "fixedsmall", "learned_range")


@dataclass
class LikelihoodSetup:
    """Knobs of the likelihood metrics (``nll`` in ``conf/eval.yaml``).

    ``n`` examples of ``split`` (``val`` | ``train``; ``None``: the whole split), ``batch_size``
    at a time, data on ``num_levels`` levels. ODE: ``hutchinson`` probe (rademacher | gaussian |
    exact), solver tolerances ``rtol`` / ``atol``. VLB: ``steps`` — the length of the chain whose
    bound is computed (a respaced K-step model, Improved DDPM §4; ``None``: all T; not a sampler
    setting), ``variance`` (``None``: ``learned_range`` for a net with 2C output channels, else the
    stored sampler's ``variance``, else ``fixedlarge``), ``clip_x0`` (default true, as
    improved-diffusion's NLL script).
    """

    n: int | None = 256
    split: str = "val"
    batch_size: int = 64
    num_levels: int = 256
    hutchinson: str = "rademacher"
    rtol: float = 1e-5
    atol: float = 1e-5
    steps: int | None = None
    variance: str | None = None
    clip_x0: bool = True

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"nll.split={self.split!r} is not one of {list(SPLITS)}")
        if self.hutchinson not in HUTCHINSON_KINDS:
            raise ValueError(f"nll.hutchinson={self.hutchinson!r} is not one of {list(HUTCHINSON_KINDS)}")
        if self.variance is not None and self.variance not in VLB_VARIANCES:
            raise ValueError(f"nll.variance={self.variance!r} is not one of {list(VLB_VARIANCES)} (or null)")
        if (self.n is not None and self.n < 1) or self.batch_size < 1 or self.num_levels < 2:
            raise ValueError(f"nll needs n >= 1, batch_size >= 1, num_levels >= 2; got {self.n}, {self.batch_size}, {self.num_levels}")


def _beta_table_name(module) -> str | None:
    """The name of a discrete model's β table from its stored run config (``"cosine_betas"`` …)."""
    betas = (((getattr(module, "run_config", None) or {}).get("schedule") or {}).get("betas") or {})
    target = betas.get("_target_") if isinstance(betas, dict) else None
    return str(target).rsplit(".", 1)[-1] if target else None


def _is_discrete(module) -> bool:
    from ..schedules.discrete import DiscreteSchedule

    return isinstance(module.schedule, DiscreteSchedule)


def _check_route(module, metric: str) -> None:
    """Each route fits some forward processes: a one-line message naming the schedule if not."""
    if metric == "nll_ode":
        try:
            if _is_discrete(module):
                module.schedule.as_vpsde(_beta_table_name(module))
            else:
                module.schedule.continuous_view()
        except ValueError as err:
            hint = "; this model reports metrics=[nll_vlb]" if _is_discrete(module) else ""
            raise ConfigError(f"metrics=[nll_ode]: {err}{hint}") from None
    if metric == "nll_vlb" and not _is_discrete(module):
        raise ConfigError(f"metrics=[nll_vlb] needs a discrete-time model (DiffusionModule), not a {type(module.schedule).__name__} "
                          "forward process; a score SDE model reports metrics=[nll_ode]")


def _vlb_variance(module, setup: LikelihoodSetup) -> str:
    if setup.variance is not None:
        return setup.variance
    out_channels = getattr(module.net, "out_channels", None)
    if out_channels is not None and out_channels == 2 * module.data_shape[0]:
        return "learned_range"
    stored = ((module.run_config or {}).get("sampler") or {}).get("variance")
    return stored if stored in ("fixedlarge", "fixedsmall") else "fixedlarge"


def _ode_route(module) -> dict:
    """How ``nll_ode`` read the model: ``route="sde"``, or ``"ddpm_vpsde"`` with the VP SDE of its
    β table and the network's time scale (:meth:`~diffzoo.schedules.DiscreteSchedule.as_vpsde`)."""
    sde, t_map = module.schedule.continuous_view()
    if t_map is None:
        return {"route": "sde"}
    return {"route": "ddpm_vpsde", "beta_min": sde.beta_min, "beta_max": sde.beta_max, "N": sde.N,
            "time_scale": float(module.schedule.T - 1)}


def _bits_per_dim(module, metric: str, x: torch.Tensor, gens, setup: LikelihoodSetup, use_ema: bool, info: dict) -> tuple[torch.Tensor, int]:
    """``[b]`` bits/dim of the batch ``x`` (on the 256 levels of ``[−1, 1]``) and the NFE used."""
    was_training = module.training
    module.eval()
    try:
        if metric == "nll_ode":
            from .ode_nll import ode_nll

            out = ode_nll(module.denoiser(use_ema), x, num_levels=setup.num_levels, hutchinson=setup.hutchinson,
                          rtol=setup.rtol, atol=setup.atol, generator=gens)
            return out.bits_per_dim, out.nfe
        from ..schedules.discrete import spaced_timesteps
        from .vlb import vlb_bits_per_dim

        schedule = module.schedule
        if setup.steps is not None and setup.steps < schedule.T:
            schedule = schedule.respace(spaced_timesteps(schedule.T, int(setup.steps), "even"))  # Improved DDPM §4
        out = vlb_bits_per_dim(module.denoiser(use_ema), schedule, x, variance=info["variance"], clip_x0=setup.clip_x0,
                               generator=gens)
        return out.total_bpd, schedule.T
    finally:
        module.train(was_training)


def likelihood_records(module, metrics, datamodule, setup: LikelihoodSetup, seed: int = 0, use_ema: bool = True,
                       step: int | None = None, shard: str = "contiguous", progress: bool = False) -> list[MetricRecord]:
    """One :class:`MetricRecord` per metric of :data:`LIKELIHOOD_METRICS` in ``metrics``: the mean
    NLL in bits/dim over the examples (``std``: its standard error), named e.g. ``nll_ode_val256``.

    Every process of the default group must call it; each scores its share of the examples
    and all get the same records.
    """
    records = []
    for metric in [m for m in metrics if m in LIKELIHOOD_METRICS]:
        _check_route(module, metric)
        data = load_split(datamodule, setup.split, setup.n).x
        if data.ndim != 4:
            raise ConfigError(f"metrics=[{metric}] scores images in bits/dim; {datamodule.name!r} holds points (use metrics=[loglik])")
        n = int(data.shape[0])
        info: dict = {"variance": _vlb_variance(module, setup)} if metric == "nll_vlb" else {}
        rank, world = rank_and_world_size()
        bpd, idx, nfe = [], [], 0
        batches = shard_batches(n, setup.batch_size, rank, world, shard)
        for batch in track(batches, total=len(batches), description=f"{metric} (rank {rank})", enabled=progress):
            x = (data[batch.start:batch.stop].float() / 127.5 - 1).to(module.device)  # the 256 levels of [−1, 1]
            gens = per_sample_generators(seed, batch, device=module.device, stream="nll")
            values, used = _bits_per_dim(module, metric, x, gens, setup, use_ema, info)
            bpd.append(values.double().cpu())
            idx.append(torch.as_tensor(list(batch), dtype=torch.long))
            nfe = max(nfe, used)
        local = torch.cat(bpd) if bpd else torch.empty(0, dtype=torch.float64)
        values = gather_by_index(local, torch.cat(idx) if idx else torch.empty(0, dtype=torch.long), n)
        se = float(values.std() / math.sqrt(n)) if n > 1 else None
        extra = {"unit": "bits/dim", "num_levels": setup.num_levels, "split": setup.split, "batch_size": setup.batch_size}
        if metric == "nll_ode":
            extra.update(hutchinson=setup.hutchinson, rtol=setup.rtol, atol=setup.atol, dequantization="uniform")
            extra.update(_ode_route(module))
        else:
            extra.update(variance=info["variance"], steps=min(setup.steps or module.schedule.T, module.schedule.T), clip_x0=setup.clip_x0)
        records.append(MetricRecord(
            name=metric_name(metric, n, setup.split), value=float(values.mean()), std=se, metric=metric, n=n,
            nfe=all_reduce_max(nfe), weights=module.weights_label(use_ema), seed=seed, step=step,
            reference={"split": setup.split, "n": n}, extra=extra))
    return records
