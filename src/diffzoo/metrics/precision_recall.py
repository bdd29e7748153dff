"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models", NeurIPS) on feature vectors. Pure maths on tensors — no network,
no images.

Each set of features stands for its manifold: the union of balls around its points, the ball of a
point reaching its k-th nearest neighbour within the same set (the point itself excluded; k = 3 in
the paper). Precision is the fraction of generated points inside the real manifold (are samples
realistic?), recall the fraction of real points inside the generated manifold (is the data
covered?).

Distances are exact Euclidean distances of float64 differences, ``sqrt(Σ (xᵢ − yᵢ)²)``, computed in
blocks of at most ``batch_size × batch_size`` pairs (memory stays bounded whatever the set sizes).
Unlike the ``‖x‖² + ‖y‖² − 2xᵀy`` expansion, this form has no cancellation error: identical
vectors are at distance exactly 0 and a distance does not depend on the blocking, so duplicated
samples (a collapsed generator) give radius 0 and the result is identical for every
``batch_size`` and every ordering of the inputs. The price is speed (several times slower than a
matrix product for wide features): use a GPU for Inception features of tens of thousands of
samples.
"""

from __future__ import annotations

import torch

__all__ = ["precision_recall", "knn_radii", "manifold_membership"]

DEFAULT_BATCH_SIZE = 1024


def _as_features(x: torch.Tensor, name: str, device) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{name} must be [n, d] feature vectors, got shape {tuple(x.shape)}")
    x = x.detach().to(device=device, dtype=torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or Inf values")
    return x


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[len(a), len(b)]`` from float64 differences (see the module docstring)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(features: torch.Tensor, k: int = 3, batch_size: int = DEFAULT_BATCH_SIZE, device=None) -> torch.Tensor:
    """Distance of every point to its ``k``-th nearest neighbour in the same set, itself excluded.

    Args:
        features: ``[n, d]`` with ``n > k``. Only the point's own index is excluded: a duplicate of
            a point is one of its neighbours, at distance 0.
        k: which neighbour (1 = the nearest other point).
        batch_size: rows and columns per block of distances.
        device: where to compute (default: ``features``' device).

    Returns:
        float64 ``[n]`` radii, on ``device``.
    """
    if k < 1 or batch_size < 1:
        raise ValueError(f"knn_radii needs k >= 1 and batch_size >= 1, got k={k}, batch_size={batch_size}")
    x = _as_features(features, "features", features.device if device is None else device)
    n = x.shape[0]
    if n <= k:
        raise ValueError(f"the k-th nearest neighbour needs more than k={k} points, got {n}")
    radii = []
    for i in range(0, n, batch_size):
        rows = x[i: i + batch_size]
        best = torch.full((rows.shape[0], 0), float("inf"), dtype=torch.float64, device=x.device)  # k smallest so far
        for j in range(0, n, batch_size):
            d = _distances(rows, x[j: j + batch_size])
            lo, hi = max(i, j), min(i + rows.shape[0], j + d.shape[1])
            if lo < hi:  # this block holds some points' distance to themselves
                own = torch.arange(lo, hi, device=x.device)
                d[own - i, own - j] = float("inf")
            merged = torch.cat([best, d], dim=1)
            best = merged.topk(min(k, merged.shape[1]), dim=1, largest=False, sorted=True).values
        radii.append(best[:, k - 1])
    return torch.cat(radii)


def manifold_membership(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor,
                        batch_size: int = DEFAULT_BATCH_SIZE, device=None) -> torch.Tensor:
    """Which queries lie in the union of the closed balls ``B(points[j], radii[j])``.

    Kynkäänniemi et al. 2019, §2, eq. 1: ``f(φ, Φ) = 1`` iff ``‖φ − φ′‖₂ ≤ ‖φ′ − NN_k(φ′)‖₂`` for at
    least one ``φ′ ∈ Φ``.

    Args:
        queries: ``[m, d]``; points: ``[n, d]``; radii: ``[n]`` (from :func:`knn_radii` of ``points``).

    Returns:
        bool ``[m]``.
    """
    dev = points.device if device is None else device
    q, p = _as_features(queries, "queries", dev), _as_features(points, "points", dev)
    r = radii.detach().to(device=dev, dtype=torch.float64)
    if q.shape[1] != p.shape[1] or r.shape != (p.shape[0],):
        raise ValueError(f"manifold_membership: queries {tuple(q.shape)}, points {tuple(p.shape)} and radii {tuple(r.shape)} do not fit")
    inside = torch.zeros(q.shape[0], dtype=torch.bool, device=dev)
    for i in range(0, q.shape[0], batch_size):
        for j in range(0, p.shape[0], batch_size):
            d = _distances(q[i: i + batch_size], p[j: j + batch_size])
            inside[i: i + batch_size] |= (d <= r[j: j + batch_size]).any(dim=1)
    return inside


def precision_recall(real_features: torch.Tensor, fake_features: torch.Tensor, k: int = 3,
                     batch_size: int = DEFAULT_BATCH_SIZE, device=None) -> dict[str, float]:
    """Improved precision and recall of generated features against real ones.

    Kynkäänniemi et al. 2019, §2, eq. 2 (with ``f`` of eq. 1, :func:`manifold_membership`):
    ``precision = 1/|Φ_g| Σ_{φ_g ∈ Φ_g} f(φ_g, Φ_r)`` and ``recall = 1/|Φ_r| Σ_{φ_r ∈ Φ_r} f(φ_r, Φ_g)``,
    each manifold built from the distances to the ``k``-th nearest neighbour within its own set.

    The estimate depends on the set sizes (more points, smaller balls); the paper compares sets
    of equal size (50 000 each, k = 3).

    Args:
        real_features: ``Φ_r`` ``[N, d]``, ``N > k``.
        fake_features: ``Φ_g`` ``[M, d]``, ``M > k``.
        k: the neighbour that sets each ball's radius.
        batch_size: rows and columns per block of distances (memory ``batch_size²`` float64);
            the result does not depend on it.
        device: where to compute (default: ``real_features``' device).

    Returns:
        ``{"precision": float, "recall": float}``, both in ``[0, 1]``.
    """
    dev = real_features.device if device is None else device
    real = _as_features(real_features, "real_features", dev)
    fake = _as_features(fake_features, "fake_features", dev)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision_recall: feature dims differ ({real.shape[1]} vs {fake.shape[1]})")
    real_radii = knn_radii(real, k, batch_size)
    fake_radii = knn_radii(fake, k, batch_size)
    # One pass over the real × fake distances serves both directions (each block is used twice).
    fake_in_real = torch.zeros(fake.shape[0], dtype=torch.bool, device=dev)
    real_in_fake = torch.zeros(real.shape[0], dtype=torch.bool, device=dev)
    for i in range(0, real.shape[0], batch_size):
        for j in range(0, fake.shape[0], batch_size):
            d = _distances(real[i: i + batch_size], fake[j: j + batch_size])  # [real block, fake block]
            fake_in_real[j: j + batch_size] |= (d <= real_radii[i: i + batch_size, None]).any(dim=0)
            real_in_fake[i: i + batch_size] |= (d <= fake_radii[None, j: j + batch_size]).any(dim=1)
    return {"precision": float(fake_in_real.double().mean()), "recall": float(real_in_fake.double().mean())}
