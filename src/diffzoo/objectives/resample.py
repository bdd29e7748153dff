"""Distributions over training timesteps, with importance weights that keep the loss unbiased.

Improved DDPM (Nichol & Dhariwal 2021, §3.3, eq. 18) samples ``t ~ p_t`` with
``p_t ∝ √E[L_t²]`` to reduce the variance of ``L_vlb``, and divides each term by ``T·p_t`` so that
``E_{t∼p}[L_t / (T p_t)] = (1/T) Σ_t L_t`` is the uniform average. ``E[L_t²]`` is tracked from the
last ``history`` losses of each t; until every t has that many, sampling stays uniform
(improved-diffusion ``resample.py``, "warm-up"), and once warm ``p`` is mixed with a small
uniform part so that no t is starved.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .base import uniform_timesteps

__all__ = ["TimestepDraw", "TimestepSampler", "UniformSampler", "LossSecondMomentSampler"]


class TimestepDraw(NamedTuple):
    """``t``: int64 ``[B]`` indices; ``weights``: float ``[B]`` importance weights ``1/(T p_t)``."""

    t: torch.Tensor
    weights: torch.Tensor


class TimestepSampler(nn.Module):
    """A distribution ``p`` over ``{0, …, T−1}`` that may adapt to the losses it sees."""

    def probabilities(self, T: int) -> torch.Tensor:
        """``p`` as float64 ``[T]``."""
        raise NotImplementedError

    def sample(self, T: int, batch: int, device) -> TimestepDraw:
        """Draw ``batch`` timesteps from ``p`` (global RNG) with weights ``1/(T p_t)``."""
        p = self.probabilities(T).to(device)
        t = torch.multinomial(p, batch, replacement=True)
        return TimestepDraw(t, (1.0 / (T * p[t])).float())

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record the per-sample losses ``[B]`` seen at timesteps ``t`` ``[B]`` (default: nothing)."""


class UniformSampler(TimestepSampler):
    """``t ~ U{0, …, T−1}`` with unit weights (DDPM, Ho et al. 2020 Algorithm 1)."""

    def probabilities(self, T: int) -> torch.Tensor:
        return torch.full((T,), 1.0 / T, dtype=torch.float64)

    def sample(self, T: int, batch: int, device) -> TimestepDraw:
        return TimestepDraw(uniform_timesteps(T, batch, device), torch.ones(batch, device=device))


class LossSecondMomentSampler(TimestepSampler):
    """``p_t ∝ √E[L_t²]`` over the last ``history`` losses of each t (Improved DDPM eq. 18),
    uniform until every t has ``history`` losses, then mixed as ``(1 − u)·p + u/T`` with
    ``u = uniform_prob`` (improved-diffusion ``LossSecondMomentResampler``).

    The histories are persistent buffers, so they are saved in checkpoints and a resumed run
    draws exactly the timesteps an uninterrupted one would. Under ``torch.distributed`` the
    losses of every rank are gathered before updating, so all ranks keep the same ``p``.

    Args:
        T: number of timesteps (the schedule's ``T``).
        history: losses kept per timestep (paper: 10).
        uniform_prob: the uniform share ``u`` once warm (code: 0.001).
    """

    def __init__(self, T: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__()
        if int(T) < 1 or int(history) < 1:
            raise ValueError(f"LossSecondMomentSampler: T and history must be positive, got T={T}, history={history}")
        if not 0.0 <= uniform_prob <= 1.0:
            raise ValueError(f"LossSecondMomentSampler: uniform_prob must be in [0, 1], got {uniform_prob}")
        self.T, self.history, self.uniform_prob = int(T), int(history), float(uniform_prob)
        self.register_buffer("loss_history", torch.zeros(self.T, self.history, dtype=torch.float64))
        self.register_buffer("loss_counts", torch.zeros(self.T, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"T={self.T}, history={self.history}, uniform_prob={self.uniform_prob}"

    @property
    def warmed_up(self) -> bool:
        """Whether every timestep has a full history."""
        return bool((self.loss_counts == self.history).all())

    def _check_T(self, T: int) -> None:
        if T != self.T:
            raise ValueError(
                f"LossSecondMomentSampler was built for T={self.T} but the schedule has T={T}; "
                "set objective.timestep_sampler.T to the schedule's T"
            )

    def probabilities(self, T: int) -> torch.Tensor:
        self._check_T(T)
        if not self.warmed_up:
            return torch.full((T,), 1.0 / T, dtype=torch.float64)
        w = self.loss_history.double().pow(2).mean(dim=1).sqrt().cpu()  # √E[L_t²], eq. 18
        p = w / w.sum()
        return (1 - self.uniform_prob) * p + self.uniform_prob / T

    def sample(self, T: int, batch: int, device) -> TimestepDraw:
        self._check_T(T)
        if not self.warmed_up:  # uniform until every t has a full history
            return TimestepDraw(uniform_timesteps(T, batch, device), torch.ones(batch, device=device))
        return super().sample(T, batch, device)

    @torch.no_grad()
    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append each ``(t, loss)`` to its history (oldest dropped once full), in batch order,
        after gathering the pairs of every rank in rank order."""
        t, losses = _all_gather_pairs(t.detach().long(), losses.detach().double())
        hist = self.loss_history.detach().cpu().numpy().copy()
        counts = self.loss_counts.detach().cpu().numpy().copy()
        for ti, li in zip(t.cpu().tolist(), losses.cpu().tolist()):
            if counts[ti] == self.history:
                hist[ti, :-1] = hist[ti, 1:]
                hist[ti, -1] = li
            else:
                hist[ti, counts[ti]] = li
                counts[ti] += 1
        self.loss_history.copy_(torch.from_numpy(hist))
        self.loss_counts.copy_(torch.from_numpy(counts))


def _all_gather_pairs(t: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``(t, losses)`` ``[B_r]`` of every rank, in rank order (ranks may hold
    different batch sizes). Without an initialised process group, returns the inputs."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t, losses
    world = dist.get_world_size()
    size = torch.tensor([t.numel()], dtype=torch.long, device=t.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    pad = longest - t.numel()
    t_pad = torch.cat([t, t.new_zeros(pad)])
    l_pad = torch.cat([losses, losses.new_zeros(pad)])
    ts = [torch.zeros_like(t_pad) for _ in range(world)]
    ls = [torch.zeros_like(l_pad) for _ in range(world)]
    dist.all_gather(ts, t_pad)
    dist.all_gather(ls, l_pad)
    return (torch.cat([x[:n] for x, n in zip(ts, sizes)]), torch.cat([x[:n] for x, n in zip(ls, sizes)]))
