"""NLL in bits/dim of a trained model by the probability-flow ODE (Score SDE §4.3).

    python -m diffzoo.metrics.ode_nll runs/sde_vp_digits/.../checkpoints/last.ckpt --n 256

For each held-out example: quantise to ``num_levels`` levels of ``[−1, 1]`` (256: 8 bits, as a
PNG holds it and as the VLB route of :mod:`diffzoo.metrics.vlb` scores it), dequantise uniformly
(:func:`diffzoo.likelihood.uniform_dequantize`), map to the model's coordinates, and integrate the
probability-flow ODE with the Hutchinson divergence estimator
(:func:`diffzoo.likelihood.ode_log_likelihood`: RK45, rtol = atol = 1e-5, start time 1e-5, one
Rademacher probe per example, as the reference ``likelihood.py``). Bits/dim then follow
:func:`diffzoo.likelihood.bits_per_dim` with the model's data range (offset 7 bits for ``[−1, 1]``,
8 for ``[0, 1]``: the same density of the same data, in the two coordinate systems).

Two kinds of model have a probability-flow ODE (:func:`probability_flow_of`): a score model
with an SDE (:class:`~diffzoo.lit.score.ScoreModule`), and a discrete DDPM ε-model with a linear
β table (:class:`~diffzoo.lit.diffusion.DiffusionModule`), read as a model of the VP SDE that
table discretises (Score SDE App. B–C, "DDPM cont."; :mod:`diffzoo.parameterization.vp_bridge`).
The latter's ODE NLL and its discrete VLB (:mod:`diffzoo.metrics.vlb`) then score the same network.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Callable, NamedTuple

import torch

from ..likelihood import bits_per_dim, ode_log_likelihood, uniform_dequantize
from ..parameterization.vp_bridge import ddpm_as_vpsde
from ..utils.random import GeneratorLike, derive_seed, per_sample_generators

__all__ = ["ODENLL", "ProbabilityFlow", "probability_flow_of", "beta_table_name", "ode_nll", "ode_nll_of_checkpoint", "main"]


class ODENLL(NamedTuple):
    """``bits_per_dim`` and ``nll`` (nats, model coordinates) per example ``[B]``, and the number
    of ODE right-hand-side evaluations (each one score evaluation plus its backward pass)."""

    bits_per_dim: torch.Tensor
    nll: torch.Tensor
    nfe: int


class ProbabilityFlow(NamedTuple):
    """What the ODE likelihood needs of a model: ``score_fn(x, t)`` in the model's coordinates,
    the forward ``sde``, the map ``to_model`` from data in ``[−1, 1]`` to those coordinates, their
    ``data_range``, and ``route`` (``"sde"`` for a score model, ``"ddpm_vpsde"`` for a DDPM model)."""

    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    sde: object
    to_model: Callable[[torch.Tensor], torch.Tensor]
    data_range: tuple[float, float]
    route: str


def beta_table_name(module) -> str | None:
    """The name of a discrete model's β table from its stored run config (``"linear_betas"``,
    ``"cosine_betas"`` …), or ``None`` when the config does not say."""
    betas = (((getattr(module, "run_config", None) or {}).get("schedule") or {}).get("betas") or {})
    target = betas.get("_target_") if isinstance(betas, dict) else None
    return str(target).rsplit(".", 1)[-1] if target else None


def probability_flow_of(module, use_ema: bool = True) -> ProbabilityFlow:
    """The probability-flow ODE of ``module``: a ScoreModule's own SDE and score, or, for a
    DiffusionModule with DDPM's linear β table, the VP SDE it discretises and the score
    ``−ε_θ(x, (T−1)t)/σ(t)`` (:func:`diffzoo.parameterization.vp_bridge.ddpm_as_vpsde`).

    Raises ``ValueError`` (one line naming the schedule) for any other forward process."""
    schedule = module.schedule
    if hasattr(schedule, "prior_logp"):
        return ProbabilityFlow(module.score_fn(use_ema), schedule, module.to_model, module.model_data_range, "sde")
    if hasattr(schedule, "alphas_cumprod"):
        name = beta_table_name(module)
        bridge = ddpm_as_vpsde(module.denoiser(use_ema), schedule, channels=module.data_shape[0], name=name)
        return ProbabilityFlow(bridge.score_fn, bridge.sde, lambda x: x, (-1.0, 1.0), "ddpm_vpsde")
    raise ValueError(f"ode_nll needs a model with an SDE forward process (or a DDPM model with linear β), "
                     f"not {type(schedule).__name__}")


def ode_nll(
    module,
    x: torch.Tensor,
    num_levels: int = 256,
    dequantize: bool = True,
    hutchinson: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    use_ema: bool = True,
    prior_logp=None,
    generator: GeneratorLike = None,
) -> ODENLL:
    """Bits/dim of ``x`` under a :class:`~diffzoo.lit.score.ScoreModule` with an SDE, or a
    :class:`~diffzoo.lit.diffusion.DiffusionModule` with DDPM's linear β (:func:`probability_flow_of`).

    Args:
        module: the model.
        x: ``[B, …]`` data in ``[−1, 1]``; with ``dequantize`` it is snapped to ``num_levels``
            levels and dequantised, otherwise taken as continuous (then ``num_levels`` only sets
            the bits/dim offset).
        hutchinson, rtol, atol, eps, prior_logp: see :func:`diffzoo.likelihood.ode_log_likelihood`
            (``prior_logp`` defaults to the SDE's prior; an exact ``p_T`` removes the prior mismatch).
        generator: for the dequantisation noise and the Hutchinson probes (one generator, or one
            per example — then example ``i``'s result depends on its own generator only).
    Returns: :class:`ODENLL`.
    """
    flow = probability_flow_of(module, use_ema)
    if dequantize:
        x = uniform_dequantize(x, generator, data_range=(-1.0, 1.0), num_levels=num_levels)
    was_training = module.training
    module.eval()
    try:
        ll = ode_log_likelihood(flow.score_fn, flow.sde, flow.to_model(x), hutchinson=hutchinson,
                                rtol=rtol, atol=atol, eps=eps, prior_logp=prior_logp, generator=generator)
    finally:
        module.train(was_training)
    nll = -ll.log_likelihood
    bpd = bits_per_dim(nll, x[0].numel(), data_range=flow.data_range, num_levels=num_levels)
    return ODENLL(bpd, nll, ll.nfe)


def ode_nll_of_checkpoint(ckpt_path, n: int = 256, split: str = "val", batch_size: int = 64, seed: int = 0,
                          use_ema: bool = True, num_levels: int = 256, hutchinson: str = "rademacher",
                          device: str = "cpu") -> dict:
    """The NLL in bits/dim of the first ``n`` examples of ``split`` (``val`` or ``train``) under the
    checkpoint's model; example ``i`` uses generator ``(seed, "ode_nll", i)``. Returns a summary
    dict (mean, standard error, n, NFE per batch, weights, setup)."""
    from ..lit.build import load_module
    from .data import build_datamodule

    if split not in ("val", "train"):
        raise ValueError(f"split must be 'val' or 'train', got {split!r}")
    module = load_module(ckpt_path, use_ema=use_ema).to(device)
    dm = build_datamodule(module.run_config["data"])
    data = dm.val_dataset_tensor() if split == "val" else dm.train_dataset_tensor()
    data = data[:n]
    if len(data) == 0:
        raise ValueError(f"the {split} split of {dm.name} is empty")
    bpd, nfe = [], []
    for start in range(0, len(data), batch_size):
        idx = range(start, min(len(data), start + batch_size))
        gens = per_sample_generators(derive_seed(seed, "ode_nll"), idx, device=device)
        out = ode_nll(module, data[start:start + len(idx)].to(device), num_levels=num_levels, hutchinson=hutchinson,
                      use_ema=use_ema, generator=gens)
        bpd.append(out.bits_per_dim.cpu())
        nfe.append(out.nfe)
    bpd = torch.cat(bpd).double()
    return {
        "ode_nll_bpd": float(bpd.mean()),
        "ode_nll_bpd_se": float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else float("nan"),
        "n": len(bpd), "split": split, "num_levels": num_levels, "hutchinson": hutchinson,
        "weights": "ema" if use_ema else "raw", "nfe_per_batch": nfe, "data": dm.name,
    }


def main(argv: list[str] | None = None) -> dict:
    """``python -m diffzoo.metrics.ode_nll CKPT [--n N] [--split val|train] …``: print the summary as JSON."""
    p = argparse.ArgumentParser(prog="python -m diffzoo.metrics.ode_nll", description=__doc__.splitlines()[0])
    p.add_argument("ckpt_path")
    p.add_argument("--n", type=int, default=256, help="examples to score (default 256)")
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-levels", type=int, default=256, help="quantisation levels of the data (default 256 = 8 bits)")
    p.add_argument("--hutchinson", default="rademacher", choices=["rademacher", "gaussian", "exact"])
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    summary = ode_nll_of_checkpoint(args.ckpt_path, n=args.n, split=args.split, batch_size=args.batch_size, seed=args.seed,
                                    use_ema=not args.raw, num_levels=args.num_levels, hutchinson=args.hutchinson,
                                    device=args.device)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
