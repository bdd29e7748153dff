"""Improved precision and recall (Kynkäänniemi et al. 2019): closed forms and constructed cases —
identical sets, far-apart sets, a generator collapsed onto one real point, a 1-D example worked out
by hand — plus blocking and ordering invariance, the metric's names, and one evaluation through
``run_evaluation`` in the digits classifier's feature space."""

import pytest
import torch
from omegaconf import OmegaConf

from diffzoo.lit.build import build_module
from diffzoo.metrics.features import extract_features
from diffzoo.metrics.naming import metric_name
from diffzoo.metrics.pipeline import EvalSetup, matched_reference, prepare_evaluation, run_evaluation
from diffzoo.metrics.precision_recall import knn_radii, manifold_membership, precision_recall
from tests.integration.test_eval_cli import tiny_run_config


def _points(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_identical_sets_have_precision_and_recall_one():
    x = _points(50, 5, 0)
    assert precision_recall(x, x.clone()) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall(x, x[torch.randperm(50)], k=1) == {"precision": 1.0, "recall": 1.0}


def test_far_apart_clusters_have_precision_and_recall_zero():
    real, fake = _points(60, 4, 0), _points(40, 4, 1, shift=1000.0)  # radii are O(1), the gap is ~2000
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}


def test_generator_collapsed_onto_one_real_point():
    # 40 distinct real points plus a second copy of real point 7: N = 41. Every fake sample is
    # that point, so the fake radii are 0 (a duplicate is a neighbour at distance 0): the fake
    # manifold is the single point p. Every fake sample is inside the ball of real point 7 →
    # precision 1; the real points inside the fake manifold are those equal to p: 2 of 41.
    base = _points(40, 6, 3)
    p = base[7]
    real = torch.cat([base, p[None]])
    fake = p.expand(25, -1).clone()
    assert torch.equal(knn_radii(fake, k=3), torch.zeros(25, dtype=torch.float64))
    assert precision_recall(real, fake, k=3) == {"precision": 1.0, "recall": 2 / 41}


# A 1-D example worked out by hand.
# Real {0, 1, 3, 7}. k = 1: nearest other points 1, 0, 1, 3 → radii 1, 1, 2, 4; balls [-1, 1], [0, 2],
# [1, 5], [3, 11] → real manifold [-1, 11]. k = 2: radii 3, 2, 3, 6 → manifold [-3, 13].
# Fake, given in the order {12, -2, 2.5, 11, 0.5}. k = 1: radii 1, 2.5, 2, 1, 2; balls [11, 13],
# [-4.5, 0.5], [0.5, 4.5], [10, 12], [-1.5, 2.5] → fake manifold [-4.5, 4.5] ∪ [10, 13].
# k = 2: radii 9.5, 4.5, 4.5, 8.5, 2.5 → manifold [-6.5, 21.5].
REAL_1D = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
FAKE_1D = torch.tensor([[12.0], [-2.0], [2.5], [11.0], [0.5]])


def test_hand_built_1d_radii():
    assert knn_radii(REAL_1D, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(REAL_1D, k=2).tolist() == [3.0, 2.0, 3.0, 6.0]
    assert knn_radii(FAKE_1D, k=1).tolist() == [1.0, 2.5, 2.0, 1.0, 2.0]
    assert knn_radii(FAKE_1D, k=2).tolist() == [9.5, 4.5, 4.5, 8.5, 2.5]
    # only a point's own index is excluded: duplicates are neighbours at distance 0
    dup = torch.tensor([[0.0], [0.0], [0.0], [5.0]])
    assert knn_radii(dup, k=2).tolist() == [0.0, 0.0, 0.0, 5.0]
    assert knn_radii(dup, k=3).tolist() == [5.0, 5.0, 5.0, 5.0]


def test_hand_built_1d_precision_and_recall():
    # k = 1. Precision: fake points in [-1, 11]: 2.5, 0.5, and 11 (on the boundary of the ball of 7:
    # the balls are closed, eq. 1's ≤); 12 and -2 are outside → 3/5. Recall: real points in
    # [-4.5, 4.5] ∪ [10, 13]: 0, 1, 3; 7 is outside → 3/4.
    assert manifold_membership(FAKE_1D, REAL_1D, knn_radii(REAL_1D, k=1)).tolist() == [False, False, True, True, True]
    assert manifold_membership(REAL_1D, FAKE_1D, knn_radii(FAKE_1D, k=1)).tolist() == [True, True, True, False]
    assert precision_recall(REAL_1D, FAKE_1D, k=1) == {"precision": 3 / 5, "recall": 3 / 4}
    # just outside the boundary: 11 + 1e-9 leaves the ball of 7 (and nothing else changes)
    nudged = FAKE_1D.double().clone()
    nudged[3] += 1e-9
    assert precision_recall(REAL_1D, nudged, k=1) == {"precision": 2 / 5, "recall": 3 / 4}
    # k = 2: [-3, 13] holds every fake point, [-6.5, 21.5] every real one
    assert precision_recall(REAL_1D, FAKE_1D, k=2) == {"precision": 1.0, "recall": 1.0}


def test_swapping_the_sets_swaps_precision_and_recall():
    real, fake = _points(70, 3, 4), _points(55, 3, 5, shift=0.7)
    a, b = precision_recall(real, fake), precision_recall(fake, real)
    assert a == {"precision": b["recall"], "recall": b["precision"]}
    assert 0.0 < a["precision"] < 1.0 and 0.0 < a["recall"] < 1.0


@pytest.mark.parametrize("batch_size", [1, 2, 5, 16, 64])
def test_blocks_do_not_change_the_result(batch_size):
    real, fake = _points(97, 7, 6).float(), _points(83, 7, 7, shift=0.5).float()
    whole = precision_recall(real, fake, k=3, batch_size=10_000)
    assert precision_recall(real, fake, k=3, batch_size=batch_size) == whole
    assert torch.equal(knn_radii(real, 3, batch_size=batch_size), knn_radii(real, 3, batch_size=10_000))
    assert 0.0 < whole["precision"] < 1.0 and 0.0 < whole["recall"] < 1.0


def test_invariant_to_permutations():
    real, fake = _points(90, 5, 8), _points(75, 5, 9, shift=0.5)
    g = torch.Generator().manual_seed(0)
    pr, pf = torch.randperm(90, generator=g), torch.randperm(75, generator=g)
    assert precision_recall(real[pr], fake[pf], batch_size=16) == precision_recall(real, fake, batch_size=16)
    assert torch.equal(knn_radii(real[pr], batch_size=16), knn_radii(real, batch_size=16)[pr])


def test_bad_inputs_are_refused():
    x = _points(10, 3, 0)
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(x[:3], x)
    with pytest.raises(ValueError, match="feature dims differ"):
        precision_recall(x, _points(10, 4, 1))
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(x, torch.full((5, 3), float("nan")))
    with pytest.raises(ValueError, match="k >= 1"):
        knn_radii(x, k=0)


def test_names_of_the_two_numbers():
    assert metric_name("precision_recall", 2000, "digits", part="precision") == "precision_digits2k"
    assert metric_name("precision_recall", 50_000, part="recall") == "recall50k"
    assert metric_name("precision_recall", 1000, "fashion_mnist", part="recall") == "recall_fashion_mnist1k"
    with pytest.raises(ValueError, match="parts"):
        metric_name("precision_recall", 100)
    with pytest.raises(ValueError, match="parts"):
        metric_name("fid", 100, part="precision")
    with pytest.raises(ValueError, match="n > pr_k"):
        EvalSetup(n=3, metrics=("precision_recall",))


def test_through_run_evaluation_in_the_digits_feature_space(tmp_path):
    """Untrained tiny model, 20 samples, the digits classifier (1 epoch): the two records carry the
    data set's space in their names and equal the function on the same features; FID is unchanged."""
    torch.manual_seed(0)
    module = build_module(OmegaConf.create(tiny_run_config("digits")), (1, 8, 8))
    common = dict(n=20, batch_size=8, sampler=module.sampler.with_steps(3), classifier_epochs=1, backend="diffzoo", progress=False)
    setup = EvalSetup(metrics=("fid", "precision_recall"), gather_images=True, **common)
    data_cfg = module.run_config["data"]
    inputs = prepare_evaluation(module.data_shape, data_cfg, setup, tmp_path)
    result = run_evaluation(module, data_cfg, setup, tmp_path, inputs=inputs)
    by_name = {r.name: r for r in result.records}
    assert list(by_name) == ["fid_digits20", "precision_digits20", "recall_digits20"]
    prec, rec = by_name["precision_digits20"], by_name["recall_digits20"]
    assert prec.metric == rec.metric == "precision_recall" and prec.feature_space == "digits"
    assert prec.extra == {"part": "precision", "k": 3, "reference_rows": 20, "reference_seed": 0, "distance": "euclidean, float64"}
    assert prec.reference["hash"] == inputs.reference.content_hash and inputs.reference.n > 20

    # the same numbers from the function, on the features of the same images (same batches)
    feats = torch.cat([extract_features(inputs.extractor, result.images[i: i + 8]).features for i in range(0, 20, 8)])
    expected = precision_recall(matched_reference(inputs.reference, 20, seed=0), feats, k=3)
    assert (prec.value, rec.value) == (expected["precision"], expected["recall"])

    # asking for precision / recall leaves the other metrics' numbers as they were
    fid_only = run_evaluation(module, data_cfg, EvalSetup(metrics=("fid",), **common), tmp_path)  # cached classifier / reference
    assert fid_only.values() == {"fid_digits20": by_name["fid_digits20"].value}
