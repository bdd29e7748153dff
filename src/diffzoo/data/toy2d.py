"""Two-dimensional toy distributions, each scaled to roughly unit standard deviation.

Every distribution has ``sample(n, generator=None)`` → float32 ``[n, 2]`` and ``log_prob(x)``
→ float64 ``[n]`` (nats):

* ``eight_gaussians`` and ``gaussian_mixture`` are :class:`~diffzoo.data.gaussian_mixture.GaussianMixture`
  instances, so their density and their score under *any* Gaussian forward process are exact;
* ``checkerboard`` is piecewise uniform, its density exact;
* ``swiss_roll`` and ``two_moons`` are a uniform point on a curve plus isotropic Gaussian noise,
  ``p(x) = ∫₀¹ N(x; c(u), s² I) du``; ``log_prob`` evaluates that integral by the midpoint rule,
  which is also a Gaussian mixture (``as_gaussian_mixture``) with scores under every forward process.

The set of names is closed: :data:`TOY_DISTRIBUTIONS`.
"""

from __future__ import annotations

import inspect
import math

import torch

from diffzoo.data.gaussian_mixture import GaussianMixture
from diffzoo.utils.random import derive_seed

from .base import DataSplits, DiffusionDataModule, InMemoryDataset
from .errors import check_choice

__all__ = [
    "TOY_DISTRIBUTIONS",
    "Checkerboard",
    "Toy2DDataModule",
    "EightGaussians",
    "NoisyCurve",
    "SwissRoll",
    "ToyGaussianMixture",
    "TwoMoons",
    "make_toy_distribution",
]

_MOMENT_POINTS = 1 << 16  # midpoint-rule nodes for the curve's mean and spread (exact to ~1e-9)


class NoisyCurve:
    """``x = (c(u) + s_raw·ε − m) / k`` with ``u ~ U[0, 1)``, ``ε ~ N(0, I)``.

    ``c`` is the raw curve (subclasses define :meth:`curve`), ``s_raw = noise`` the raw noise
    std, ``m`` the mean of ``c(u) + s_raw·ε`` and ``k`` its root-mean-square standard deviation
    over the two coordinates, both computed by quadrature, so the data has unit average variance.
    """

    dim = 2

    def __init__(self, noise: float):
        if noise <= 0:
            raise ValueError(f"{type(self).__name__}: noise must be > 0 (the density needs it), got {noise}")
        self.noise_raw = float(noise)
        u = (torch.arange(_MOMENT_POINTS, dtype=torch.float64) + 0.5) / _MOMENT_POINTS
        c = self.curve(u)
        self.center = c.mean(0)  # E[c(u)]; the noise has mean 0
        variance = c.var(0, unbiased=False).mean() + self.noise_raw**2  # per-coordinate, averaged
        self.scale = float(variance.sqrt())

    def curve(self, u: torch.Tensor) -> torch.Tensor:
        """Raw curve point for ``u ∈ [0, 1)``: float64 ``[M]`` → ``[M, 2]``."""
        raise NotImplementedError

    @property
    def noise(self) -> float:
        """Noise std ``s = s_raw / k`` in data units."""
        return self.noise_raw / self.scale

    def scaled_curve(self, u: torch.Tensor) -> torch.Tensor:
        """``(c(u) − m) / k``: float64 ``[M]`` → ``[M, 2]``."""
        return (self.curve(u) - self.center) / self.scale

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points → float32 ``[n, 2]``."""
        u = torch.rand(n, dtype=torch.float64, generator=generator)
        eps = torch.randn(n, 2, dtype=torch.float64, generator=generator)
        return (self.scaled_curve(u) + self.noise * eps).float()

    def _nodes(self, num_points: int) -> torch.Tensor:
        u = (torch.arange(num_points, dtype=torch.float64) + 0.5) / num_points
        return self.scaled_curve(u)

    def log_prob(self, x: torch.Tensor, num_points: int = 4096, chunk: int = 4096) -> torch.Tensor:
        """``log p(x) = log ∫₀¹ N(x; c̃(u), s² I) du`` by the midpoint rule with ``num_points`` nodes:
        ``x`` ``[B, 2]`` → float64 ``[B]``. The error is small once the node spacing along the curve
        is well below ``s``."""
        nodes = self._nodes(num_points)
        s2 = self.noise**2
        out = []
        for xb in x.to(torch.float64).split(chunk):
            d2 = torch.cdist(xb, nodes).square()  # [b, M]
            out.append(torch.logsumexp(-d2 / (2 * s2), dim=1) - math.log(num_points) - math.log(2 * math.pi * s2))
        return torch.cat(out)

    def as_gaussian_mixture(self, num_points: int = 1024) -> GaussianMixture:
        """The midpoint-rule mixture ``(1/M) Σ_i N(c̃(u_i), s² I)`` that :meth:`log_prob` evaluates;
        it gives (approximate) scores under every Gaussian forward process."""
        return GaussianMixture(torch.ones(num_points), self._nodes(num_points), self.noise)


class SwissRoll(NoisyCurve):
    """The 2-D swiss roll of Sohl-Dickstein et al. 2015 (Fig. 1): scikit-learn's
    ``make_swiss_roll`` projected on its (x, z) coordinates, ``c(t) = (t cos t, t sin t)`` with
    ``t = 1.5π(1 + 2u)``. ``noise`` is in scikit-learn's (raw) units."""

    def __init__(self, noise: float = 0.5):
        super().__init__(noise)

    def curve(self, u: torch.Tensor) -> torch.Tensor:
        t = 1.5 * math.pi * (1 + 2 * u)
        return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=-1)


class TwoMoons(NoisyCurve):
    """scikit-learn's ``make_moons``: half of the mass on the upper arc ``(cos θ, sin θ)``, half on
    the lower arc ``(1 − cos θ, 0.5 − sin θ)``, ``θ ~ U[0, π]``. ``noise`` is in raw units."""

    def __init__(self, noise: float = 0.1):
        super().__init__(noise)

    def curve(self, u: torch.Tensor) -> torch.Tensor:
        upper = u < 0.5
        theta = math.pi * torch.where(upper, 2 * u, 2 * u - 1)
        x = torch.where(upper, torch.cos(theta), 1 - torch.cos(theta))
        y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
        return torch.stack([x, y], dim=-1)


class Checkerboard:
    """Uniform density on the "black" cells of an ``n × n`` board covering ``[−a, a)²``.

    Cell ``(i, j)`` (column ``i``, row ``j``, from the lower left) is filled when ``i + j`` is even.
    Each row and column holds ``n/2`` filled cells, so both marginals are ``U[−a, a)``, whose
    variance is ``a²/3``; ``a = √3`` gives unit variance. The filled area is half the board,
    ``2a²``, so ``p(x) = 1 / (2a²)`` on the filled cells and 0 elsewhere.
    """

    dim = 2

    def __init__(self, num_cells: int = 4):
        if num_cells < 2 or num_cells % 2:
            raise ValueError(f"Checkerboard: num_cells must be an even number >= 2, got {num_cells}")
        self.num_cells = int(num_cells)
        self.half_width = math.sqrt(3.0)
        self.cell_width = 2 * self.half_width / self.num_cells

    def _cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ij = torch.floor((x.to(torch.float64) + self.half_width) / self.cell_width).long()
        return ij[:, 0], ij[:, 1]

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        """bool ``[B]``: whether each point of ``x`` ``[B, 2]`` lies on a filled cell."""
        i, j = self._cells(x)
        on_board = (i >= 0) & (i < self.num_cells) & (j >= 0) & (j < self.num_cells)
        return on_board & ((i + j) % 2 == 0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = −log(2a²)`` on the filled cells, ``−∞`` elsewhere: ``[B, 2]`` → float64 ``[B]``."""
        inside = torch.full((x.shape[0],), -math.log(2 * self.half_width**2), dtype=torch.float64)
        return inside.masked_fill(~self.in_support(x), -math.inf)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points → float32 ``[n, 2]``: a filled cell uniformly, then a point in it."""
        i = torch.randint(self.num_cells, (n,), generator=generator)
        j = 2 * torch.randint(self.num_cells // 2, (n,), generator=generator) + i % 2  # i + j even
        u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
        corner = torch.stack([i, j], dim=-1).to(torch.float64) * self.cell_width - self.half_width
        return (corner + u * self.cell_width).float()


class EightGaussians(GaussianMixture):
    """Eight equal Gaussians of std ``std`` centred on a circle of radius ``r``, at angles
    ``2πk/8``. With ``Σ_k cos²(2πk/8) = 4`` the per-coordinate variance is ``r²/2 + std²``;
    ``r = √(2(1 − std²))`` makes it 1. Component ``k`` carries class label ``k``."""

    def __init__(self, std: float = 0.1):
        if not 0 < std < 1:
            raise ValueError(f"EightGaussians: std must be in (0, 1), got {std}")
        radius = math.sqrt(2 * (1 - std**2))
        angle = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
        super().__init__(torch.ones(8), means, std)


class ToyGaussianMixture(GaussianMixture):
    """A Gaussian mixture given by its parameters, by default the 2-D toy with which Song & Ermon
    2019 (NCSN) show that Langevin dynamics gets the mode weights wrong:
    ``0.8·N((5, 5), I) + 0.2·N((−5, −5), I)``.

    With ``standardize=True`` the mixture is mapped through ``x ↦ (x − E[x]) / k`` with
    ``k = √(tr Cov[x] / D)`` (closed forms of :class:`GaussianMixture`): zero mean, unit average
    variance, same shape. ``covs`` accepts what :class:`GaussianMixture` accepts.
    """

    def __init__(
        self,
        weights=(0.8, 0.2),
        means=((5.0, 5.0), (-5.0, -5.0)),
        covs=1.0,
        labels=None,
        standardize: bool = True,
    ):
        super().__init__(weights, means, covs, labels)
        if standardize:
            center = self.mean()
            k = math.sqrt(float(torch.trace(self.covariance())) / self.dim)
            super().__init__(self.weights, (self.means - center) / k, self.covs / k**2, self.labels.tolist())


TOY_DISTRIBUTIONS = {
    "swiss_roll": SwissRoll,
    "eight_gaussians": EightGaussians,
    "two_moons": TwoMoons,
    "checkerboard": Checkerboard,
    "gaussian_mixture": ToyGaussianMixture,
}


def make_toy_distribution(name: str, **params):
    """Build the toy distribution ``name`` (one of :data:`TOY_DISTRIBUTIONS`) with ``params``
    passed to its constructor; unknown names or parameters raise ``ValueError`` listing valid ones."""
    check_choice("data.name", name, list(TOY_DISTRIBUTIONS))
    cls = TOY_DISTRIBUTIONS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"data.params for {name!r}: unknown {unknown}; accepted: {accepted}")
    return cls(**params)


class Toy2DDataModule(DiffusionDataModule):
    """A fixed sample of a toy distribution: ``n_train`` training and ``n_val`` held-out points.

    Args:
        name: one of :data:`TOY_DISTRIBUTIONS`.
        n_train, n_val: sizes of the two splits.
        params: keyword arguments of the distribution's constructor (e.g. ``{"noise": 0.3}``).
        conditional: give batches the component label ``"y"`` (mixtures only).
        data_seed: seed of the draw of the data set itself (kept apart from ``seed``, the data
            order, so a seed sweep trains on the same points).
        **loader: ``batch_size``, ``num_workers``, ``seed``, … of :class:`DiffusionDataModule`.

    Attributes:
        distribution: the toy distribution (``sample``, ``log_prob``; mixtures also ``score``).
    """

    def __init__(
        self,
        name: str = "swiss_roll",
        n_train: int = 10000,
        n_val: int = 2000,
        params: dict | None = None,
        conditional: bool = False,
        data_seed: int = 0,
        **loader,
    ):
        super().__init__(**loader)
        self.distribution = make_toy_distribution(name, **dict(params or {}))
        if conditional and not isinstance(self.distribution, GaussianMixture):
            labelled = [k for k, v in TOY_DISTRIBUTIONS.items() if issubclass(v, GaussianMixture)]
            raise ValueError(
                f"data.conditional=true needs a labelled toy distribution ({', '.join(labelled)}), got {name!r}"
            )
        if n_train <= 0 or n_val < 0:
            raise ValueError(f"data.n_train must be > 0 and data.n_val >= 0, got {n_train}, {n_val}")
        self.name = name
        self.n_train, self.n_val = int(n_train), int(n_val)
        self.data_seed = int(data_seed)
        self.data_shape = (2,)
        self.num_classes = self.distribution.num_classes if conditional else None

    def _draw(self, n: int, split: str) -> InMemoryDataset:
        if n == 0:
            return InMemoryDataset(torch.empty(0, 2), None if self.num_classes is None else torch.empty(0))
        g = torch.Generator()
        g.manual_seed(derive_seed(self.data_seed, "toy2d", self.name, split))
        if self.num_classes is not None:
            x, y = self.distribution.sample(n, generator=g, return_labels=True)
            return InMemoryDataset(x, y)
        return InMemoryDataset(self.distribution.sample(n, generator=g))

    def load_splits(self) -> DataSplits:
        return DataSplits(self._draw(self.n_train, "train"), self._draw(self.n_val, "val"))
