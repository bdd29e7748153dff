"""Toy 2-D distributions: densities integrate to one, samples follow the densities, closed-form
moments, and the curves are scikit-learn's."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from diffzoo.data import (
    TOY_DISTRIBUTIONS,
    Checkerboard,
    EightGaussians,
    GaussianMixture,
    SwissRoll,
    Toy2DDataModule,
    ToyGaussianMixture,
    TwoMoons,
    make_toy_distribution,
)

LIM, BINS, SUB = 4.0, 32, 6  # histogram window [-LIM, LIM]², BINS² bins, SUB² density nodes per bin
NODES = 1024  # quadrature nodes for the curve densities in these tests


def _log_prob(dist, x):
    return dist.log_prob(x, num_points=NODES) if hasattr(dist, "as_gaussian_mixture") else dist.log_prob(x)


@functools.lru_cache(maxsize=None)
def _bin_masses(name: str) -> torch.Tensor:
    """∫ p over each of the BINS² bins by the midpoint rule on SUB² nodes per bin → [BINS, BINS]."""
    dist = make_toy_distribution(name)
    n = BINS * SUB
    h = 2 * LIM / n
    c = -LIM + (torch.arange(n, dtype=torch.float64) + 0.5) * h
    grid = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    p = _log_prob(dist, grid).exp().reshape(BINS, SUB, BINS, SUB)
    return p.sum((1, 3)) * h * h


@pytest.mark.parametrize("name", [n for n in TOY_DISTRIBUTIONS if n != "checkerboard"])  # see the aligned test below
def test_density_integrates_to_one(name):
    masses = _bin_masses(name)
    assert float(masses.sum()) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("name", list(TOY_DISTRIBUTIONS))
def test_samples_follow_the_density(name):
    """Total-variation distance between the histogram of 20k samples and the binned density.
    Pure sampling noise gives about ½·√(2·#bins/(π n)) ≈ 0.04 here; a wrong scale, centre or
    weighting gives far more."""
    dist = make_toy_distribution(name)
    n = 20000
    x = dist.sample(n, torch.Generator().manual_seed(1)).double()
    counts, _, _ = np.histogram2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=BINS, range=[[-LIM, LIM]] * 2)
    empirical = torch.from_numpy(counts) / n
    masses = _bin_masses(name)
    outside = abs((1 - float(empirical.sum())) - (1 - float(masses.sum())))
    tv = 0.5 * (float((empirical - masses).abs().sum()) + outside)
    assert tv < 0.07


@pytest.mark.parametrize("name", list(TOY_DISTRIBUTIONS))
def test_roughly_unit_scale_and_centred(name):
    x = make_toy_distribution(name).sample(20000, torch.Generator().manual_seed(2)).double()
    assert x.var(0).mean() == pytest.approx(1.0, abs=0.05)
    assert x.mean(0).abs().max() < 0.05


@pytest.mark.parametrize("name", list(TOY_DISTRIBUTIONS))
def test_sampling_is_a_function_of_the_generator(name):
    dist = make_toy_distribution(name)
    a = dist.sample(64, torch.Generator().manual_seed(5))
    b = dist.sample(64, torch.Generator().manual_seed(5))
    c = dist.sample(64, torch.Generator().manual_seed(6))
    assert a.dtype == torch.float32 and a.shape == (64, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- Gaussian mixtures
@pytest.mark.parametrize(
    "dist", [EightGaussians(), EightGaussians(std=0.3), ToyGaussianMixture()], ids=["8g", "8g-wide", "gm"]
)
def test_mixture_sample_moments_match_closed_form(dist):
    assert isinstance(dist, GaussianMixture)
    n = 40000
    x = dist.sample(n, torch.Generator().manual_seed(3)).double()
    cov = dist.covariance()
    sd = cov.diagonal().sqrt()
    assert ((x.mean(0) - dist.mean()).abs() < 4 * sd / math.sqrt(n)).all()
    # Var of a sample covariance entry ≈ E[x_i² x_j²]/n; a loose 4-sigma bound with the 4th moment
    fourth = (x - x.mean(0)).pow(2).T @ (x - x.mean(0)).pow(2) / n
    assert ((torch.cov(x.T) - cov).abs() < 4 * (fourth / n).sqrt()).all()


def test_eight_gaussians_have_identity_covariance():
    for std in (0.05, 0.1, 0.5):
        dist = EightGaussians(std=std)
        torch.testing.assert_close(dist.mean(), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(dist.covariance(), torch.eye(2, dtype=torch.float64), atol=1e-12, rtol=0)
        assert dist.num_classes == 8


def test_standardized_mixture_keeps_its_shape():
    raw = ToyGaussianMixture(standardize=False)
    std = ToyGaussianMixture()
    torch.testing.assert_close(std.mean(), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    assert float(torch.trace(std.covariance())) / 2 == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(std.weights, raw.weights)
    # separation of the modes in units of the component std is invariant under x ↦ (x − m)/k
    sep = lambda d: float((d.means[0] - d.means[1]).norm() / d.covs[0, 0, 0].sqrt())  # noqa: E731
    assert sep(std) == pytest.approx(sep(raw)) == pytest.approx(10 * math.sqrt(2))
    # NCSN's toy: 0.8·N((5,5), I) + 0.2·N((−5,−5), I)
    torch.testing.assert_close(raw.means, torch.tensor([[5.0, 5.0], [-5.0, -5.0]], dtype=torch.float64))


# ---------------------------------------------------------------- curves
def test_swiss_roll_curve_is_sklearns():
    from sklearn.datasets import make_swiss_roll

    X, t = make_swiss_roll(500, noise=0.0, random_state=0)
    u = torch.as_tensor((t / (1.5 * math.pi) - 1) / 2)
    torch.testing.assert_close(SwissRoll().curve(u), torch.as_tensor(X[:, [0, 2]]), atol=1e-9, rtol=0)


def test_two_moons_curve_is_sklearns():
    from sklearn.datasets import make_moons

    X, _ = make_moons(400, noise=0.0, random_state=0)
    u = (torch.arange(200001, dtype=torch.float64)) / 200000 * (1 - 1e-12)
    curve = TwoMoons().curve(u)
    assert float(torch.cdist(torch.as_tensor(X), curve).min(1).values.max()) < 1e-4


def test_curve_mixture_is_the_quadrature_of_log_prob():
    roll = SwissRoll(noise=1.0)
    x = roll.sample(50, torch.Generator().manual_seed(0))
    gm = roll.as_gaussian_mixture(num_points=256)
    torch.testing.assert_close(gm.log_prob(x), roll.log_prob(x, num_points=256), atol=1e-9, rtol=0)


def test_curve_density_converges_at_second_order():
    """The midpoint rule's error is O(h²): halving the node spacing divides it by ~4."""
    moons = TwoMoons()
    x = moons.sample(100, torch.Generator().manual_seed(0))
    ref = moons.log_prob(x, num_points=32768)
    err = [float((moons.log_prob(x, num_points=m) - ref).abs().max()) for m in (512, 1024, 4096)]
    assert 3.0 < err[0] / err[1] < 5.0
    assert err[2] < 1e-4  # the default number of nodes


# ---------------------------------------------------------------- checkerboard
def test_checkerboard_density_exact_on_an_aligned_grid():
    board = Checkerboard(num_cells=4)
    m = 8 * board.num_cells  # nodes at the centres of a grid aligned with the cells
    c = -board.half_width + (torch.arange(m, dtype=torch.float64) + 0.5) * (2 * board.half_width / m)
    grid = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    p = board.log_prob(grid).exp()
    assert float(p.sum() * (2 * board.half_width / m) ** 2) == pytest.approx(1.0, abs=1e-12)
    assert float(p.max()) == pytest.approx(1 / 6)  # 1/(2a²) with a = √3
    assert board.log_prob(torch.tensor([[2.0, 0.0], [0.0, -1.8]])).isneginf().all()


def test_checkerboard_samples_fill_the_black_cells_uniformly():
    board = Checkerboard(num_cells=4)
    n = 32000
    x = board.sample(n, torch.Generator().manual_seed(0))
    assert bool(board.in_support(x).all())
    i, j = board._cells(x)
    counts = torch.bincount(i * 4 + j, minlength=16).double() / n
    filled = ((torch.arange(4)[:, None] + torch.arange(4)[None]) % 2 == 0).flatten()
    assert float(counts[~filled].sum()) == 0.0
    assert ((counts[filled] - 1 / 8).abs() < 4 * math.sqrt(1 / 8 * 7 / 8 / n)).all()


# ---------------------------------------------------------------- registry and data module
def test_unknown_names_and_params_are_rejected():
    with pytest.raises(ValueError, match="swiss_roll.*eight_gaussians.*two_moons.*checkerboard.*gaussian_mixture"):
        make_toy_distribution("spiral")
    with pytest.raises(ValueError, match="accepted: \\['noise'\\]"):
        make_toy_distribution("swiss_roll", std=0.1)
    with pytest.raises(ValueError, match="even"):
        Checkerboard(num_cells=3)


def test_toy_datamodule_batches_and_labels():
    dm = Toy2DDataModule("gaussian_mixture", n_train=300, n_val=50, conditional=True, batch_size=32)
    assert dm.data_shape == (2,) and dm.num_classes == 2 and isinstance(dm.distribution, GaussianMixture)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (32, 2) and batch["x"].dtype == torch.float32
    assert batch["y"].dtype == torch.int64 and set(batch["y"].tolist()) <= {0, 1}
    assert dm.train_dataset_tensor().shape == (300, 2) and dm.val_dataset_tensor().shape == (50, 2)
    # the data set is a function of data_seed, not of the order seed
    other = Toy2DDataModule("gaussian_mixture", n_train=300, n_val=50, seed=7)
    assert torch.equal(other.train_dataset_tensor(), dm.train_dataset_tensor())
    with pytest.raises(ValueError, match="eight_gaussians, gaussian_mixture"):
        Toy2DDataModule("swiss_roll", conditional=True)
    unlabelled = Toy2DDataModule("checkerboard", n_train=64, n_val=0, batch_size=16)
    assert "y" not in next(iter(unlabelled.train_dataloader())) and unlabelled.val_dataloader() == []
