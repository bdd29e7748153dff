"""Registered claims: what each paper claims, where, the criteria, and the check that measures it.

A claim is registered with :func:`claim` on the function that measures it::

    @claim("ddim_eta_ordering", paper="DDIM", where="Table 1",
           statement="η = 0 gives the best FID at few steps, σ̂ the worst",
           criteria=[Less("fid_eta0_S10", "fid_eta1_S10"), ...])
    def ddim_eta_ordering(ctx: Context) -> Result: ...

The criteria are fixed at registration, before anything runs; the function trains what it needs
through the normal experiments (:meth:`Context.trained`), measures, and returns the values the
criteria name. Claims that no CPU can re-run are listed with :func:`full_scale` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .criteria import Criterion, Measured

__all__ = ["Claim", "Result", "FullScale", "CLAIMS", "FULL_SCALE", "claim", "full_scale", "PAPERS"]

# Paper keys in report order, with the citation the report prints.
PAPERS: dict[str, str] = {
    "SD15": "Sohl-Dickstein et al. 2015, Deep Unsupervised Learning using Nonequilibrium Thermodynamics",
    "SGLD": "Welling & Teh 2011, Bayesian Learning via Stochastic Gradient Langevin Dynamics",
    "NCSN": "Song & Ermon 2019, Generative Modeling by Estimating Gradients of the Data Distribution",
    "NCSNv2": "Song & Ermon 2020, Improved Techniques for Training Score-Based Generative Models",
    "DDPM": "Ho et al. 2020, Denoising Diffusion Probabilistic Models",
    "DDIM": "Song et al. 2021, Denoising Diffusion Implicit Models",
    "iDDPM": "Nichol & Dhariwal 2021, Improved Denoising Diffusion Probabilistic Models",
    "ADM": "Dhariwal & Nichol 2021, Diffusion Models Beat GANs on Image Synthesis",
    "CFG": "Ho & Salimans 2022, Classifier-Free Diffusion Guidance",
    "Score SDE": "Song et al. 2021, Score-Based Generative Modeling through Stochastic Differential Equations",
    "GLIDE": "Nichol et al. 2022, GLIDE: Towards Photorealistic Image Generation and Editing with Text-Guided Diffusion Models",
    "Imagen": "Saharia et al. 2022, Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding",
    "CDM": "Ho, Saharia et al. 2021, Cascaded Diffusion Models for High Fidelity Image Generation",
    "unCLIP": "Ramesh et al. 2022, Hierarchical Text-Conditional Image Generation with CLIP Latents",
    "LDM": "Rombach et al. 2022, High-Resolution Image Synthesis with Latent Diffusion Models",
}


@dataclass
class Result:
    """What a check measured: ``values`` (every name the criteria use, and any others worth
    reporting), ``setting`` (our setting in one sentence: data, budget, sample sizes), ``figures``
    (PNG paths) and ``note`` (anything a reader needs to weigh the numbers)."""

    values: dict[str, Measured]
    setting: str
    figures: list[Path] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """One claim of one paper.

    Attributes:
        name: registry key (``python -m diffzoo.claims <name>``).
        paper: a key of :data:`PAPERS`.
        statement: the claim in words, with the paper's own number or direction.
        where: where the paper says it (section, table, figure, equation).
        criteria: the comparisons that decide the verdict (fixed before the run).
        check: ``check(ctx) → Result``.
        shown: the measured values the report's summary prints (default: those the criteria use).
    """

    name: str
    paper: str
    statement: str
    where: str
    criteria: tuple[Criterion, ...]
    check: Callable
    shown: tuple[str, ...] = ()


@dataclass(frozen=True)
class FullScale:
    """A claim no CPU can re-run: the paper's number and the command that would check it."""

    paper: str
    statement: str
    where: str
    experiment: str
    command: str


CLAIMS: dict[str, Claim] = {}
FULL_SCALE: list[FullScale] = []


def claim(name: str, *, paper: str, statement: str, where: str, criteria: Sequence[Criterion], shown: Sequence[str] = ()):
    """Register the decorated ``check(ctx) → Result`` as claim ``name``."""
    if paper not in PAPERS:
        raise ValueError(f"claim {name!r}: paper {paper!r} is not one of {list(PAPERS)}")
    if not criteria:
        raise ValueError(f"claim {name!r} needs at least one criterion")

    def register(check: Callable) -> Callable:
        if name in CLAIMS:
            raise ValueError(f"claim {name!r} is registered twice")
        CLAIMS[name] = Claim(name, paper, statement, where, tuple(criteria), check, tuple(shown))
        return check

    return register


def full_scale(paper: str, statement: str, where: str, experiment: str, command: str | None = None) -> None:
    """List a claim that needs the paper's compute (its cost is printed from the experiment's config)."""
    FULL_SCALE.append(FullScale(paper, statement, where, experiment, command or f"python -m diffzoo.reproduce {experiment}"))
