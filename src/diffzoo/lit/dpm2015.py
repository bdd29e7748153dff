"""``DPM2015Module``: the diffusion probabilistic model of Sohl-Dickstein et al. 2015 (SD15),
trained on its bound K, reported as SD15 Table 1 does.

Model (SD15 §2, code ``model.py``):

* forward chain ``q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I)`` with the constant-fraction β
  schedule (:class:`~diffzoo.schedules.dpm2015.DPM2015Schedule`, T = 40 for the swiss roll), fixed
  (SD15 code) or learned jointly with the reverse kernel by ascent on K (SD15 §2.4.1,
  ``schedule.learn_betas``);
* reverse kernels ``p(x_{t−1} | x_t) = N(√(1 − β_t) x_t + μ_coeff √β_t, sigmoid(β_coeff/√T + logit β_t))``
  with ``(μ_coeff, β_coeff)`` from the network (:class:`~diffzoo.networks.dpm2015_mlp.DPM2015MLP`),
  learned for the paper's ``t = 2 … T``; the last reverse step (``t = 1``) is fixed to the reverse
  of the first forward step, ``N(√(1 − β_1) x_1, β_1 I)`` (SD15 App. B.2, "edge effect"; the code
  never trains index 0);
* bound (SD15 eq. 14): ``K = −Σ_{t=2}^{T} E_q KL(q(x_{t−1}|x_t, x_0) ‖ p(x_{t−1}|x_t)) + H_q(x_T|x_0)
  − H_q(x_1|x_0) − H_p(x_T)``.

Training maximises K. ``t_sampling`` chooses the Monte-Carlo estimate of the sum over t:
``"batch"`` — one t ~ U{2..T} per minibatch, times (T − 1) (the SD15 code, ``cost_single_t``; the
code multiplies by T, which over-counts the T − 1 terms); ``"sample"`` — one t per example (same
expectation, lower variance); ``"all"`` — every t for every example (exact sum, T − 1 times the
work).

Reporting (SD15 Table 1): per example (all D dimensions), in bits: ``bound_bits`` = K (Table 1's
first column, 2.35 bits for the swiss roll) and ``K_minus_Lnull_bits`` = K − L_null (second column,
6.45 bits), with L_null the log-likelihood of an isotropic unit Gaussian, ``−D·H(N(0, 1))``
(−4.09 bits for D = 2); ``bound_bits_minus_paper`` is K − 2.35 when ``paper_bound_bits`` is given. Both assume whitened data (zero mean, unit average variance — what SD15's
L_null of −4.09 bits for the 2-D swiss roll implies, and what ``Toy2DDataModule`` serves); the
module warns otherwise. K can never exceed the data's own log-likelihood ``E log p_data``
(reported as ``data_loglik_bits`` when the data module has an exact density).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Literal, NamedTuple

import torch
from torch import nn

from ..errors import ConfigError
from ..optim.ema import EMA
from ..schedules.discrete import extract
from ..schedules.dpm2015 import (
    DPM2015Schedule,
    GaussianMoments,
    dpm2015_bound_bits_vs_gaussian,
    dpm2015_reverse_moments,
    gaussian_entropy,
    gaussian_kl,
)
from ..utils.progress import track
from ..utils.random import GeneratorLike, derive_seed, randn, randn_like
from .base import DiffzooModule

__all__ = ["DPM2015Module", "T_SAMPLING", "BoundEstimate", "null_loglik_bits"]

TSampling = Literal["batch", "sample", "all"]
T_SAMPLING: tuple[str, ...] = ("batch", "sample", "all")


def null_loglik_bits(dim: int) -> float:
    """``L_null``: expected log-likelihood of whitened data under ``N(0, I_D)``, ``−D·H(N(0, 1))``, in bits."""
    return -dim * float(gaussian_entropy(1.0)) / math.log(2.0)


class BoundEstimate(NamedTuple):
    """Per-example estimates, float64 ``[B]``, in bits summed over the D dimensions."""

    k_minus_lnull: torch.Tensor  # K − L_null (SD15 Table 1, second column)
    k: torch.Tensor  # K (SD15 Table 1, first column)


class DPM2015Module(DiffzooModule):
    """SD15's diffusion probabilistic model for ``[B, D]`` data (see the module docstring).

    Args:
        net: ``net(x_t, t) → ReverseCoefficients(mu_coeff, beta_coeff)`` with ``net.T == schedule.T``.
        schedule: a :class:`DPM2015Schedule` (its β coefficients are trained with the network
            when ``learn_betas``).
        optimizer: ``optimizer(params) → Optimizer`` (``_partial_``).
        lr_scheduler: optional ``lr_scheduler(optimizer) → LRScheduler`` stepped every step.
        t_sampling: ``"batch"`` (SD15 code) | ``"sample"`` | ``"all"`` — the estimate of Σ_t.
        ema_decay, ema_warmup: the weight EMA used for the final bound and for sampling.
        eval_repeats: forward-noise draws per held-out example in the final bound (all t each).
        paper_values: published numbers logged next to the results (e.g. ``paper_bound_bits``).
        data_shape, seed: from ``build_module``; training noise of step k is seeded by ``(seed, k)``.
    """

    PARTS = ("net", "schedule", "optimizer", "lr_scheduler", "ema")

    def __init__(
        self,
        net: nn.Module,
        schedule: DPM2015Schedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable | None = None,
        t_sampling: TSampling = "batch",
        ema_decay: float = 0.999,
        ema_warmup: bool = True,
        eval_repeats: int = 4,
        paper_values: dict[str, float] | None = None,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if not isinstance(schedule, DPM2015Schedule):
            raise ConfigError(
                f"the SD15 model needs schedule=dpm2015 (a DPM2015Schedule), got {type(schedule).__name__}"
            )
        if t_sampling not in T_SAMPLING:
            raise ConfigError(f"model.t_sampling={t_sampling!r} is not one of {', '.join(map(repr, T_SAMPLING))}")
        if getattr(net, "T", schedule.T) != schedule.T:
            raise ConfigError(f"net.T={net.T} but the schedule has T={schedule.T}; set net.T={schedule.T}")
        if schedule.T < 2:
            raise ConfigError("the SD15 model needs T >= 2 steps (the first reverse step is fixed)")
        if eval_repeats < 1:
            raise ConfigError(f"model.eval_repeats must be >= 1, got {eval_repeats}")
        self.net = net
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.t_sampling = t_sampling
        self.ema = EMA(net, decay=ema_decay, warmup=ema_warmup)
        # the learned β coefficients get their own average, used with the averaged net
        self.schedule_ema = EMA(schedule, decay=ema_decay, warmup=ema_warmup) if schedule.learn_betas else None
        self.eval_repeats = int(eval_repeats)
        self.paper_values = {k: float(v) for k, v in (paper_values or {}).items()}
        self.data_shape = tuple(data_shape) if data_shape is not None else (getattr(net, "dim", 2),)
        if len(self.data_shape) != 1:
            raise ConfigError(f"DPM2015Module models vectors [B, D]; got data of shape {self.data_shape}")
        self.seed = int(seed)

    @property
    def T(self) -> int:
        return self.schedule.T

    # ------------------------------------------------------------------ the model
    def reverse_moments(
        self, x_t: torch.Tensor, t: torch.Tensor, net: nn.Module | None = None, schedule: DPM2015Schedule | None = None
    ) -> GaussianMoments:
        """``p(x_{t−1} | x_t)`` for int64 ``t`` ``[B]`` (indices ≥ 1): mean and variance ``[B, D]``
        in ``x_t``'s dtype (SD15 code ``get_mu_sigma``)."""
        net, schedule = net or self.net, schedule or self.schedule
        param = next(net.parameters())
        coeffs = net(x_t.to(param.dtype), t)
        beta_t = extract(schedule.betas(), t, x_t)
        return dpm2015_reverse_moments(
            x_t, coeffs.mu_coeff.to(x_t.dtype), coeffs.beta_coeff.to(x_t.dtype), beta_t, self.T
        )

    def kl_terms(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        net: nn.Module | None = None,
        schedule: DPM2015Schedule | None = None,
    ) -> torch.Tensor:
        """``KL(q(x_{t−1} | x_t, x_0) ‖ p(x_{t−1} | x_t))`` per dimension, nats ``[B, D]``, at
        ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) noise`` (SD15 eq. 14's KL term)."""
        schedule = schedule or self.schedule
        x_t = schedule.q_sample(x0, t, noise)
        post = schedule.q_posterior(x0, x_t, t)
        p = self.reverse_moments(x_t, t, net, schedule)
        return gaussian_kl(post.mean, post.variance.expand_as(x0), p.mean, p.variance)

    def bound(
        self,
        x0: torch.Tensor,
        t_sampling: TSampling | None = None,
        generator: GeneratorLike = None,
        net: nn.Module | None = None,
        schedule: DPM2015Schedule | None = None,
    ) -> BoundEstimate:
        """Unbiased per-example estimate of K and K − L_null (bits) for ``x0`` ``[B, D]``.

        The sum over the T − 1 learned steps is estimated by ``t_sampling`` (default: the
        module's); ``(T − 1)·KL_t`` for ``t ~ U{2..T}`` is unbiased for ``Σ_t E KL_t``.
        """
        t_sampling, schedule = t_sampling or self.t_sampling, schedule or self.schedule
        if t_sampling not in T_SAMPLING:
            raise ValueError(f"t_sampling={t_sampling!r} is not one of {', '.join(map(repr, T_SAMPLING))}")
        B, T = x0.shape[0], self.T
        gen = generator if isinstance(generator, torch.Generator) else None
        if t_sampling == "all":
            t = torch.arange(1, T, device=x0.device).repeat_interleave(B)
            x_rep = x0.repeat(T - 1, 1)
            kl = self.kl_terms(x_rep, t, randn_like(x_rep, generator), net, schedule).view(T - 1, B, -1).sum(0)
        else:
            shape = (1,) if t_sampling == "batch" else (B,)
            t = torch.randint(1, T, shape, generator=gen).to(x0.device).expand(B)  # paper's t = 2..T
            kl = (T - 1) * self.kl_terms(x0, t, randn_like(x0, generator), net, schedule)
        bits = dpm2015_bound_bits_vs_gaussian(kl.to(torch.float64), schedule.betas().to(x0.device)).sum(-1)
        return BoundEstimate(bits, bits + null_loglik_bits(x0.shape[1]))

    # ------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "train_dataset_tensor"):
            x = dm.train_dataset_tensor().double()
            mean, second = x.mean(0).abs().max().item(), x.pow(2).mean().item()
            if mean > 0.1 or abs(second - 1.0) > 0.1:
                warnings.warn(
                    f"DPM2015Module: the bound in bits vs a unit Gaussian assumes whitened data; this data has "
                    f"max |mean| {mean:.3f} and mean square {second:.3f} (want 0 and 1)"
                )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x0 = batch["x"]
        est = self.bound(x0)
        loss = -est.k_minus_lnull.mean()  # maximise K (the constant L_null does not move the gradient)
        n = x0.shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/bound_bits_minibatch", est.k.mean(), on_step=True, on_epoch=False, batch_size=n)
        if self.schedule.learn_betas:
            self.log("train/beta_1", self.schedule.betas()[0].detach(), on_step=True, on_epoch=False, batch_size=n)
        return loss.float()

    def trainable_parameters(self):
        """The network, plus the β coefficients as a second group when they are learned (one optimizer:
        SD15 §2.4.1 learns β by gradient ascent on the same bound K). A learning-rate schedule applies
        to both groups."""
        if not self.schedule.learn_betas:
            return self.net.parameters()
        return [{"params": list(self.net.parameters())}, {"params": list(self.schedule.parameters())}]

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)  # also updates the network's EMA
        if self.schedule_ema is not None:
            self.schedule_ema.update(self.schedule)

    def averaged(self, use_ema: bool = True) -> tuple[nn.Module, DPM2015Schedule]:
        """The (network, schedule) pair used to evaluate and sample: the EMA copies or the raw ones."""
        if not use_ema:
            return self.net, self.schedule
        return self.ema.shadow, (self.schedule_ema.shadow if self.schedule_ema is not None else self.schedule)

    # ------------------------------------------------------------------ the reported bound
    @torch.no_grad()
    def evaluate_bound(self, x0: torch.Tensor, use_ema: bool = True, seed: int | None = None) -> dict[str, float]:
        """K and K − L_null on ``x0`` ``[N, D]`` with every t and ``eval_repeats`` noise draws per
        example, in float64: ``{"bound_bits", "beta_1", "bound_bits_stderr", "K_minus_Lnull_bits", "bound_eval_n"}``."""
        net, schedule = self.averaged(use_ema)
        gen = torch.Generator().manual_seed(derive_seed(self.seed if seed is None else seed, "bound-eval"))
        x0 = x0.to(self.device, torch.float64)
        per_example = torch.stack([
            torch.cat([self.bound(chunk, "all", gen, net, schedule).k for chunk in x0.split(1024)])
            for _ in range(self.eval_repeats)
        ]).mean(0)
        k = per_example.mean().item()
        return {
            "bound_bits": k,
            "beta_1": schedule.betas()[0].item(),
            "bound_bits_stderr": per_example.std().item() / math.sqrt(per_example.numel()),
            "K_minus_Lnull_bits": k - null_loglik_bits(x0.shape[1]),
            "bound_eval_n": float(x0.shape[0]),
        }

    def on_train_end(self) -> None:
        """Publish the held-out bound (``bound_bits``, ``K_minus_Lnull_bits``), the data's own
        log-likelihood when known (``data_loglik_bits``) and the paper's values."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "val_dataset_tensor"):
            return
        x = dm.val_dataset_tensor()
        if x.shape[0] == 0:
            x = dm.train_dataset_tensor()
        if self.trainer.fast_dev_run:
            x = x[:64]
        values = self.evaluate_bound(x)
        distribution = getattr(dm, "distribution", None)
        if distribution is not None and hasattr(distribution, "log_prob"):
            values["data_loglik_bits"] = distribution.log_prob(x).mean().item() / math.log(2.0)
        values.update(self.paper_values)
        if "paper_bound_bits" in self.paper_values:  # K − K_paper (SD15 Table 1): > 0 beats the paper
            values["bound_bits_minus_paper"] = values["bound_bits"] - self.paper_values["paper_bound_bits"]
        for key, value in values.items():
            self.trainer.callback_metrics[key] = torch.tensor(value, dtype=torch.float64)
        if self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics(values, step=self.global_step)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        x_T: torch.Tensor | None = None,
        use_ema: bool = True,
        generator: GeneratorLike = None,
        callback: Callable | None = None,
        progress: bool = False,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling through the learned reverse kernels: ``x_T ~ N(0, I)``, then
        ``x_{t−1} ~ p(x_{t−1} | x_t)`` for t = T … 2, and the fixed last step
        ``x_0 ~ N(√(1 − β_1) x_1, β_1 I)`` (SD15 App. B.2). Returns ``[n, D]``.

        ``steps`` must be ``None`` or ``T``: every kernel is learned for its own step, so the chain
        cannot be respaced; another value is ignored with a warning. ``callback`` gets
        ``{"i", "t", "x", "nfe"}`` after every step.
        """
        if steps is not None and steps != self.T:
            warnings.warn(f"DPM2015Module.sample: steps={steps} ignored; the SD15 chain always runs all T={self.T} steps")
        if x_T is None:
            if n is None:
                raise ValueError("sample() needs n or x_T")
            x_T = randn((n, *self.data_shape), generator, device=self.device)
        net, schedule = self.averaged(use_ema)
        x, B = x_T, x_T.shape[0]
        steps_down = track(range(self.T - 1, 0, -1), total=self.T - 1, description="SD15", enabled=progress)
        for nfe, i in enumerate(steps_down, 1):
            p = self.reverse_moments(x, torch.full((B,), i, dtype=torch.long, device=x.device), net, schedule)
            x = p.mean + p.variance.sqrt() * randn_like(x, generator)
            if callback is not None:
                callback({"i": i, "t": i, "x": x, "nfe": nfe})
        beta_1 = schedule.betas()[0].to(x.device, x.dtype)
        x = torch.sqrt(1 - beta_1) * x + beta_1.sqrt() * randn_like(x, generator)  # fixed edge step
        if callback is not None:
            callback({"i": 0, "t": 0, "x": x, "nfe": self.T - 1})
        return x

    # ------------------------------------------------------------------ checkpoints (same metadata as DiffusionModule)
