"""Metric names carry the sample count exactly (fid50k only from 50 000 samples) and the feature space."""

import pytest

from diffzoo.metrics.naming import MetricRecord, check_metrics, metric_name, sample_count_tag


def test_names_carry_the_exact_sample_count():
    assert metric_name("fid", 50_000) == "fid50k"
    assert metric_name("fid", 10_000) == "fid10k"
    assert metric_name("fid", 49_999) == "fid49999"  # never rounded up to 50k
    assert metric_name("kid", 2500) == "kid2500"
    assert metric_name("is", 50_000, "inception") == "is50k"
    assert sample_count_tag(37) == "37"


def test_small_data_feature_spaces_are_named():
    assert metric_name("fid", 2000, "digits") == "fid_digits2k"
    assert metric_name("kid", 10_000, "fashion_mnist") == "kid_fashion_mnist10k"
    assert metric_name("swd", 1000, None) == "swd1k"


def test_bad_names_and_counts_are_rejected():
    with pytest.raises(ValueError, match="choose from"):
        metric_name("precision", 100)
    with pytest.raises(ValueError):
        sample_count_tag(0)
    with pytest.raises(ValueError, match=r"\['bogus'\].*\['fid', 'kid', 'is'\]"):
        check_metrics(["fid", "bogus"], ("fid", "kid", "is"), "image data")


def test_record_is_json_ready():
    r = MetricRecord(name="fid_digits2k", value=1.5, metric="fid", n=2000, feature_space="digits", sampler="ddpm", nfe=100,
                     reference={"split": "train", "n": 1500, "hash": "abc"})
    d = r.as_dict()
    assert d["reference"]["hash"] == "abc" and d["weights"] == "ema" and d["eta"] is None and d["nfe"] == 100
