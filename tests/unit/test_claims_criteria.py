"""The reproduction report's criteria: sample-size-aware outcomes, verdicts, and the registry."""

import math

import pytest

from diffzoo.claims import CLAIMS, PAPERS, Greater, Less, Measured, Within, verdict
from diffzoo.claims.criteria import format_measured
from diffzoo.claims.report import README_BEGIN, README_END, update_readme


@pytest.mark.parametrize("a, b, expected", [
    (Measured(1.0, 0.1), Measured(2.0, 0.1), "held"),      # margin 1 > 2·√0.02 ≈ 0.28
    (Measured(1.0, 0.3), Measured(1.5, 0.3), "unclear"),   # margin 0.5 < 2·0.42
    (Measured(2.0, 0.1), Measured(1.0, 0.1), "not"),
    (Measured(1.0, 0.0), Measured(1.0 + 1e-12, 0.0), "held"),  # exact values: any margin counts
    (Measured(1.0, 0.0), Measured(1.0, 0.0), "not"),        # equality is not "less"
])
def test_less_is_sample_size_aware(a, b, expected):
    out = Less("a", "b").evaluate({"a": a, "b": b})
    assert out.outcome == expected
    assert out.margin == pytest.approx(b.value - a.value)
    if a.se or b.se:
        assert out.z == pytest.approx(out.margin / math.hypot(a.se, b.se))


def test_greater_mirrors_less_and_takes_numbers():
    values = {"x": Measured(0.9, 0.01)}
    assert Greater("x", 0.5).evaluate(values).outcome == "held"
    assert Less("x", 0.5).evaluate(values).outcome == "not"
    assert Greater("x", 0.885).evaluate(values).outcome == "unclear"  # 0.015 < 2 s.e.
    assert Greater("x", 0.5, margin=0.3).evaluate(values).outcome == "held"


def test_within_absolute_and_relative():
    assert Within("x", 0.8, 0.05).evaluate({"x": Measured(0.79, 0.002)}).outcome == "held"
    assert Within("x", 0.8, 0.05).evaluate({"x": Measured(0.76, 0.01)}).outcome == "unclear"
    assert Within("x", 0.8, 0.05).evaluate({"x": Measured(0.70, 0.01)}).outcome == "not"
    assert Within("x", 6.2e-6, 0.03, relative=True).evaluate({"x": Measured(6.18e-6)}).outcome == "held"
    assert Within("x", 4.9e-6, 0.03, relative=True).evaluate({"x": Measured(2.31e-6)}).outcome == "not"


def test_a_missing_measurement_is_named():
    with pytest.raises(KeyError, match="'fid_b'"):
        Less("fid_a", "fid_b").evaluate({"fid_a": Measured(1.0)})


def test_nan_never_holds():
    assert Less("a", 1.0).evaluate({"a": Measured(float("nan"))}).outcome == "not"


def test_verdict_rules():
    held, unclear, no = (Less("a", b).evaluate({"a": Measured(0.0, 1.0)}) for b in (10.0, 1.0, -1.0))
    assert (held.outcome, unclear.outcome, no.outcome) == ("held", "unclear", "not")
    assert verdict([held, held]) == "held"
    assert verdict([held, unclear]) == "partly"
    assert verdict([held, no]) == "partly"
    assert verdict([unclear, unclear]) == "partly"
    assert verdict([no, unclear]) == "not"
    assert verdict([no]) == "not"
    with pytest.raises(ValueError):
        verdict([])


def test_negative_standard_error_is_refused():
    with pytest.raises(ValueError):
        Measured(1.0, -0.1)


def test_format_measured():
    assert format_measured(Measured(0.8123, 0.0134)) == "0.812 ± 0.013"
    assert format_measured(Measured(12.345, 1.2)) == "12.3 ± 1.2"
    assert format_measured(Measured(4.036e-5)) == "4.04e-05"


def test_every_registered_claim_is_complete():
    import diffzoo.claims.papers  # noqa: F401

    assert set(p for c in CLAIMS.values() for p in [c.paper]) == set(PAPERS)  # every paper has a claim
    for c in CLAIMS.values():
        assert c.statement and c.where and c.criteria, c.name
        names = [n for k in c.criteria for n in (getattr(k, "a", None), getattr(k, "b", None)) if isinstance(n, str)]
        assert names, f"{c.name}: a criterion must compare a measured value"


def test_readme_block_is_replaced(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{README_BEGIN}\nold\n{README_END}\n\nrest\n")
    report = {"command": "python -m diffzoo.claims", "date": "2026-01-01", "minutes": 1.0, "machine": "m",
              "claims": [{"name": "c", "paper": "DDPM", "statement": "s", "verdict": "partly", "shown": ["x"],
                          "values": {"x": {"value": 1.0, "se": 0.1}}}]}
    assert update_readme(readme, report, "docs/claims.md")
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro") and text.rstrip().endswith("rest")
    assert "0 held, 1 partly, 0 not" in text and "[`c`](docs/claims.md#c)" in text
    readme.write_text("no block")
    assert not update_readme(readme, report, "docs/claims.md")
