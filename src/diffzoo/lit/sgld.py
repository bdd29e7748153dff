"""``SGLDPosterior``: Welling & Teh's SGLD (2011) sampling the posterior of their mixture model
(§5.1), as a LightningModule — the "training" steps are the Markov chain.

Vectorised chains. W&T run one chain for 10⁴ sweeps of batch size 1 (10⁶ steps). Through
Lightning one step costs ~1 ms of overhead whatever its size, so a single chain of 10⁶ steps takes
tens of minutes. The module instead runs ``C`` independent chains side by side: ``θ`` is a
``[C, 2]`` parameter, chain ``c`` sees its own minibatch, and the loss is ``Σ_c U_c(θ_c)``, whose
gradient with respect to ``θ_c`` is ``∇U_c`` alone; the SGLD update is elementwise with
independent noise, so each row is exactly an SGLD chain. ``C = 1`` with ``10⁶`` steps is the
paper's setting; the default experiment runs ``C = 400`` chains for ``10⁴`` steps, about a minute
on a CPU (PAPERS §2d: 200 chains × 2·10⁴ steps give TV 0.05–0.08 to the exact posterior).

Posterior draws are kept in a buffer (so they are checkpointed and a resumed run keeps them):
after the update at step ``t`` (0-based), ``θ`` is recorded when ``t ≥ burn_in·num_steps`` and
every ``thin`` steps, together with the step size ``ε_t`` that produced it (W&T §3 weight
posterior averages by ``ε_t``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import lightning as L
import torch

from ..errors import ConfigError
from ..optim.sgld import SGLD, PolynomialDecay, PolynomialDecayLR
from ..toys.sgld_mixture import GridPosterior, MixturePosterior, histogram_tv_distance
from ..utils.random import GeneratorLike, derive_seed
from .diffusion import DiffusionModule

__all__ = ["SGLDPosterior", "PosteriorGridSpec", "PosteriorDraws"]


class PosteriorGridSpec(NamedTuple):
    """The box and bins of the exact grid posterior the samples are compared with (PAPERS §2d:
    25 × 30 bins over [−1.5, 2.5] × [−3, 3])."""

    range1: tuple[float, float] = (-1.5, 2.5)
    range2: tuple[float, float] = (-3.0, 3.0)
    bins: tuple[int, int] = (25, 30)


class PosteriorDraws(NamedTuple):
    """Kept chain states ``draws`` ``[M, 2]`` and the step size ``ε_t`` that produced each, ``[M]``."""

    draws: torch.Tensor
    step_sizes: torch.Tensor


class SGLDPosterior(L.LightningModule):
    """``C`` SGLD chains on W&T's two-parameter mixture posterior (eq. 5). It takes no parts (no network,
    process, objective or sampler): its parameters are the chains' θ.

    Loss (the SGLD optimizer's ``loss = U`` convention, W&T eq. 4): for chain ``c`` with
    minibatch ``B_c`` of size ``n``, ``U_c = −log p(θ_c) − (N/n) Σ_{i∈B_c} log p(x_i | θ_c)``;
    the step minimises ``Σ_c U_c``.

    Args:
        num_chains: ``C`` (1 = W&T's single chain). Must equal ``data.num_chains``.
        num_steps: the number of SGLD steps (``trainer.max_steps``): sizes the step-size schedule
            and the sample buffer.
        prior_var: ``(σ_1², σ_2²)`` of the Gaussian priors ((10, 1) in W&T).
        lik_var: ``σ_x²`` of the model's mixture components (2 in W&T).
        eps_start, eps_end, gamma: ``ε_t = a (b + t)^−γ`` from ``eps_start`` at ``t = 0`` to
            ``eps_end`` at ``t = num_steps`` (W&T §5.1: 0.01 → 10⁻⁴, γ = 0.55).
        temperature: multiplies the injected noise variance (1 = the posterior).
        burn_in: fraction of ``num_steps`` discarded before samples are kept.
        thin: keep every ``thin``-th step after burn-in.
        grid: :class:`PosteriorGridSpec` fields for the TV distance and the figure.
        data_shape, seed: from ``build_module``; ``seed`` draws the initial ``θ`` of every chain
            from the prior and (per step) the injected noise.
    """

    PARTS: tuple[str, ...] = ()

    def __init__(
        self,
        num_chains: int = 1,
        num_steps: int = 1_000_000,
        prior_var: Sequence[float] = (10.0, 1.0),
        lik_var: float = 2.0,
        eps_start: float = 0.01,
        eps_end: float = 1e-4,
        gamma: float = 0.55,
        temperature: float = 1.0,
        burn_in: float = 0.5,
        thin: int = 1,
        grid: dict | None = None,
        data_shape: tuple[int, ...] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if num_chains < 1 or num_steps < 1 or thin < 1:
            raise ConfigError(
                f"model.num_chains, model.num_steps and model.thin must be >= 1, got {num_chains}, {num_steps}, {thin}"
            )
        if not 0.0 <= burn_in < 1.0:
            raise ConfigError(f"model.burn_in is a fraction of num_steps in [0, 1), got {burn_in}")
        self.num_chains, self.num_steps, self.thin = int(num_chains), int(num_steps), int(thin)
        self.burn_in_steps = int(burn_in * self.num_steps)
        self.prior_var = tuple(float(v) for v in prior_var)
        self.lik_var = float(lik_var)
        self.temperature = float(temperature)
        self.step_sizes = PolynomialDecay.from_endpoints(eps_start, eps_end, self.num_steps, gamma)
        self.grid_spec = PosteriorGridSpec(**{k: tuple(v) for k, v in (grid or {}).items()})
        self.data_shape = tuple(data_shape) if data_shape is not None else (1,)
        self.seed = int(seed)
        self.run_config: dict | None = None  # set by build_module, stored in checkpoints
        self.wandb_run_id: str | None = None
        self.posterior: MixturePosterior | None = None  # the exact posterior, built from the data in setup()

        # θ_0 of every chain from the prior p(θ) = N(0, diag(σ_1², σ_2²)).
        g = torch.Generator().manual_seed(derive_seed(self.seed, "sgld-init"))
        init = torch.randn(self.num_chains, 2, dtype=torch.float64, generator=g) * torch.tensor(self.prior_var).sqrt()
        self.theta = torch.nn.Parameter(init)
        num_kept = max(0, math.ceil((self.num_steps - self.burn_in_steps) / self.thin))
        self.register_buffer("samples", torch.zeros(num_kept, self.num_chains, 2, dtype=torch.float64))
        self.register_buffer("sample_step_sizes", torch.zeros(num_kept, dtype=torch.float64))
        self.register_buffer("num_kept", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ the model
    def setup(self, stage: str) -> None:
        """Build the exact posterior from the data module's observations (needs ``observations()``)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "observations"):
            raise ConfigError("SGLDPosterior needs a data module with observations(), e.g. data=sgld_mixture")
        if getattr(dm, "num_chains", self.num_chains) != self.num_chains:
            raise ConfigError(f"data.num_chains={dm.num_chains} but model.num_chains={self.num_chains}; set them equal")
        self.posterior = MixturePosterior(dm.observations(), self.prior_var, self.lik_var)

    def potential(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``U_c = −log p(θ_c) − (N/n) Σ_{i∈B_c} log p(x_i | θ_c)`` (W&T eq. 4).

        ``theta``: ``[C, 2]``; ``x``: ``[C, n]`` chain ``c``'s minibatch → ``[C]``.
        """
        if self.posterior is None:
            raise RuntimeError("SGLDPosterior.potential: call setup() first (it builds the posterior from the data)")
        scale = self.posterior.num_data / x.shape[-1]
        return -self.posterior.log_prior(theta) - scale * self.posterior.log_likelihood(theta, x).sum(-1)

    # ------------------------------------------------------------------ the chain
    def on_fit_start(self) -> None:
        clip = self.trainer.gradient_clip_val
        if clip:
            raise ConfigError(
                f"trainer.gradient_clip_val={clip} would clip SGLD's gradient and change the distribution it samples; "
                "set trainer.gradient_clip_val=null"
            )
        if self.trainer.accumulate_grad_batches != 1:
            raise ConfigError("trainer.accumulate_grad_batches must be 1 for SGLD (one minibatch per step)")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # The injected noise of step k is a function of (seed, k): a resumed chain continues exactly.
        torch.manual_seed(derive_seed(self.seed, "train", self.global_rank, self.global_step))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = batch["x"].to(torch.float64).reshape(self.num_chains, -1)  # chain-major, see data.sgld_mixture
        u = self.potential(self.theta, x)
        self.log("train/loss", u.mean(), on_step=True, on_epoch=False, batch_size=x.numel())
        return u.sum()  # ∂/∂θ_c of Σ_c U_c is ∇U_c: independent chains

    def optimizer_step(self, *args, **kwargs) -> None:
        # Record inside the step (as DiffusionModule does its EMA): a checkpoint written at the end
        # of this batch then holds the sample of this step.
        t = self.global_step
        super().optimizer_step(*args, **kwargs)
        if t >= self.burn_in_steps and (t - self.burn_in_steps) % self.thin == 0:
            k = (t - self.burn_in_steps) // self.thin
            if k < self.samples.shape[0]:
                self.samples[k] = self.theta.detach()
                self.sample_step_sizes[k] = self.step_sizes(t)
                self.num_kept.fill_(k + 1)

    def configure_optimizers(self):
        optimizer = SGLD([self.theta], lr=self.step_sizes(0), temperature=self.temperature)  # loss = U convention
        a, b, gamma = self.step_sizes
        scheduler = PolynomialDecayLR(optimizer, a, b, gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ draws
    def posterior_draws(self) -> PosteriorDraws:
        """The kept draws of all chains (``M`` = kept steps × ``C``), with their step sizes.

        Before burn-in ends (e.g. ``fast_dev_run``) there are none; the chains' current states
        are returned instead, with a warning, so that wiring checks can draw something.
        """
        k = int(self.num_kept)
        if k == 0:
            warnings.warn(
                "SGLDPosterior: no posterior draws kept yet (burn-in not over); using the chains' current states"
            )
            return PosteriorDraws(self.theta.detach().clone(), torch.ones(self.num_chains, dtype=torch.float64))
        return PosteriorDraws(
            self.samples[:k].reshape(-1, 2), self.sample_step_sizes[:k].repeat_interleave(self.num_chains)
        )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: GeneratorLike = None,
        callback: Callable | None = None,
        progress: bool = False,
        steps: int | None = None,
        use_ema: bool = True,
    ) -> torch.Tensor:
        """``n`` posterior draws ``[n, 2]`` picked uniformly from the kept chain states (without
        replacement while ``n`` ≤ the number kept). No network is evaluated: ``callback`` gets
        ``{"nfe": 0}``. ``steps``, ``progress`` and ``use_ema`` (the sampler contract shared with
        the diffusion modules) have no meaning for a Markov chain and are not used."""
        draws = self.posterior_draws().draws
        gen = generator if isinstance(generator, torch.Generator) else None
        if n <= draws.shape[0]:
            idx = torch.randperm(draws.shape[0], generator=gen)[:n]
        else:
            idx = torch.randint(draws.shape[0], (n,), generator=gen)
        if callback is not None:
            callback({"nfe": 0})
        return draws[idx.to(draws.device)].float()

    # ------------------------------------------------------------------ the result
    def on_train_end(self) -> None:
        """TV distance of the draws to the exact grid posterior (metric ``tv_distance``, also
        ``tv_distance_eps_weighted`` with W&T §3's ε_t weights) and the comparison figure."""
        if self.posterior is None:
            return
        grid = self.posterior.grid_posterior(*self.grid_spec)
        draws, weights = self.posterior_draws()
        draws = draws.cpu()
        values = {
            "tv_distance": histogram_tv_distance(draws, grid),
            "tv_distance_eps_weighted": histogram_tv_distance(draws, grid, weights.cpu()),
            "posterior_draws": float(draws.shape[0]),
        }
        for key, value in values.items():
            self.trainer.callback_metrics[key] = torch.tensor(value, dtype=torch.float64)
        if self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics(values, step=self.global_step)
            title = f"SGLD, {self.num_chains} chain(s) × {self.global_step} steps: TV = {values['tv_distance']:.3f}"
            save_posterior_figure(draws, grid, Path(self.trainer.default_root_dir) / "sgld_posterior.png", title)

    # ------------------------------------------------------------------ checkpoints (same metadata as DiffusionModule)
    on_save_checkpoint = DiffusionModule.on_save_checkpoint
    on_load_checkpoint = DiffusionModule.on_load_checkpoint

    def num_parameters(self) -> int:
        return self.theta.numel()


def save_posterior_figure(draws: torch.Tensor, grid: GridPosterior, path: Path, title: str = "") -> Path:
    """Side by side: the histogram of ``draws`` ``[M, 2]`` on ``grid``'s cells, and the exact cell
    masses ``grid.prob``; the exact posterior's contours are drawn over both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e1, e2 = grid.edges1.numpy(), grid.edges2.numpy()
    hist, _ = torch.histogramdd(draws.to(torch.float64), bins=[grid.edges1, grid.edges2])
    hist = (hist / max(float(draws.shape[0]), 1.0)).numpy()
    exact = grid.prob.numpy()
    c1, c2 = 0.5 * (e1[1:] + e1[:-1]), 0.5 * (e2[1:] + e2[:-1])
    vmax = max(hist.max(), exact.max())
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), dpi=100, sharey=True)
    for ax, mass, name in ((axes[0], hist, "SGLD draws"), (axes[1], exact, "exact posterior")):
        ax.pcolormesh(e1, e2, mass.T, cmap="viridis", vmin=0, vmax=vmax)
        ax.contour(c1, c2, exact.T, levels=6, colors="white", linewidths=0.6)
        ax.set_title(name)
        ax.set_xlabel("θ₁")
    axes[0].set_ylabel("θ₂")
    if title:
        fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
