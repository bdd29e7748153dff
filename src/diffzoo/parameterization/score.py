"""Score parameterisations: how a network's output becomes ``s_θ(x, t) ≈ ∇_x log p_t(x)``.

A closed set of three (:data:`SCORE_KINDS`), each with the noise level σ(t) taken from the
forward process (an SDE, or a :class:`~diffzoo.schedules.ladder.SigmaLadder` whose "time" is σ):

* ``"eps"`` — the net predicts the noise ε of ``x_t = α(t)x_0 + σ(t)ε``, and
  ``s = −ε_θ / σ(t)`` (Score SDE ``models/utils.get_score_fn`` for VP / sub-VP; ε* = −σ∇log p_t,
  Vincent 2011). DDPM++ style.
* ``"scaled"`` — ``s = out / σ(t)``: NCSNv2 Technique 3, ``s_θ(x, σ) = s_θ(x)/σ`` (Song & Ermon
  2020, §3.3), and NCSN++'s ``scale_by_sigma`` for VE (Score SDE App. H).
* ``"direct"`` — the output is the score itself: NCSN (Song & Ermon 2019), a net conditioned on
  the level index through its normalisation layers.

What the network is given as its noise level is the second closed set (:data:`NET_INPUTS`):

* ``"time"`` — ``net(x, time_scale · t, y=class)``: U-Nets and time MLPs. Score SDE feeds
  ``999 t`` to its continuous-time DDPM++ models ("the maximum value of time embedding is
  assumed to be 999", ``models/utils.py``), hence ``time_scale = 999``. For a σ ladder ``t`` is σ.
* ``"index"`` — ``net(x, y=i)`` with ``i`` the ladder index of σ (NCSN's conditional nets).
* ``"none"`` — ``net(x)``: an unconditional net (NCSNv2 Technique 3).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..utils.tensors import bcast

__all__ = ["ScoreParameterization", "SCORE_KINDS", "NET_INPUTS"]

ScoreKind = Literal["eps", "scaled", "direct"]
NetInput = Literal["time", "index", "none"]
SCORE_KINDS = ("eps", "scaled", "direct")
NET_INPUTS = ("time", "index", "none")
_DEFAULT_INPUT = {"eps": "time", "scaled": "time", "direct": "index"}



class ScoreParameterization:
    """Turns ``net`` into a score function for a forward process.

    Args:
        kind: one of :data:`SCORE_KINDS`.
        net_input: one of :data:`NET_INPUTS` (default: ``"time"`` for eps / scaled, ``"index"``
            for direct).
        time_scale: the factor ``c`` in ``net(x, c·t)`` for ``net_input="time"``.
    """

    def __init__(self, kind: ScoreKind = "eps", net_input: NetInput | None = None, time_scale: float = 1.0):
        if kind not in SCORE_KINDS:
            raise ValueError(f"score parameterization: unknown kind {kind!r}; allowed: {list(SCORE_KINDS)}")
        net_input = net_input or _DEFAULT_INPUT[kind]
        if net_input not in NET_INPUTS:
            raise ValueError(f"score parameterization: unknown net_input {net_input!r}; allowed: {list(NET_INPUTS)}")
        if not time_scale > 0:
            raise ValueError(f"score parameterization: time_scale must be > 0, got {time_scale}")
        self.kind, self.net_input, self.time_scale = kind, net_input, float(time_scale)

    def __repr__(self) -> str:
        return f"ScoreParameterization(kind={self.kind!r}, net_input={self.net_input!r}, time_scale={self.time_scale})"

    def check(self, net: nn.Module, schedule, conditional: bool = False) -> None:
        """Raise :class:`~diffzoo.errors.ConfigError` (naming the keys to change) if ``net`` / ``schedule`` cannot be
        used this way: an index input needs a σ ladder; the division by σ must not happen twice;
        class labels reach only time-conditioned nets (an NCSN net's ``y`` is the level)."""
        if self.net_input == "index" and not hasattr(schedule, "index"):
            raise ConfigError(
                f"score parameterization net_input='index' needs a σ ladder (schedule=ncsn_sigmas), not {type(schedule).__name__}; "
                "use net_input='time'"
            )
        if getattr(net, "scale_by_sigma", False):
            raise ConfigError(
                f"{type(net).__name__} has scale_by_sigma=true but the score parameterization already handles σ; "
                "set net.scale_by_sigma=false (use parameterization.kind=scaled for NCSNv2's s(x)/σ)"
            )
        if conditional and self.net_input != "time":
            raise ConfigError(f"model.conditional=true needs a time-conditioned net (net_input='time'), got net_input={self.net_input!r}")

    def __call__(self, net: nn.Module, schedule, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``s_θ(x, t)``: ``x`` ``[B, …]``, ``t`` float ``[B]`` (σ for a ladder), ``y`` optional
        int64 ``[B]`` class labels → ``[B, …]`` like ``x``."""
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if self.net_input == "time":
            out = net(x, (self.time_scale * t).to(x.dtype), **({"y": y} if y is not None else {}))
        elif self.net_input == "index":
            out = net(x, y=schedule.index(t).to(x.device))
        else:
            out = net(x)
        out = out[:, : x.shape[1]].to(x.dtype)
        if self.kind == "direct":
            return out
        sigma = bcast(schedule.sigma(t), out)
        # "eps": s = −ε_θ/σ(t) (Score SDE models/utils.py); "scaled": s = out/σ (NCSNv2 T3).
        return -out / sigma if self.kind == "eps" else out / sigma
