"""Criteria of the reproduction report: what a claim must show, written down before it is run.

A claim measures named values, each with a standard error (:class:`Measured`; 0 for a closed form).
A criterion compares them — ``a < b``, ``a > b``, ``|a − target| ≤ tol`` — and says how it came
out, *aware of the sample size*: with the difference ``d`` in the claimed direction and its standard
error ``s = √(s_a² + s_b²)`` (the measurements are treated as independent, which is conservative
for the paired comparisons of the report: same noise, same images),

* ``held``    — ``d > 2s``: the claimed direction beyond two standard errors;
* ``unclear`` — ``0 < d ≤ 2s``: the direction holds at the estimate, but within its noise;
* ``not``     — ``d ≤ 0``: the measurement goes the other way.

A claim's verdict (:func:`verdict`) is ``held`` when every criterion held, ``not`` when none held
and at least one went the other way, and ``partly`` otherwise. Nothing is forced to pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Union

__all__ = ["Measured", "Criterion", "Less", "Greater", "Within", "Outcome", "verdict", "OUTCOMES", "VERDICTS"]

OUTCOMES = ("held", "unclear", "not")
VERDICTS = ("held", "partly", "not")
Z_HELD = 2.0  # standard errors the difference must clear to count as held


@dataclass(frozen=True)
class Measured:
    """A measured value and its standard error (``se = 0``: exact, e.g. a closed form)."""

    value: float
    se: float = 0.0

    def __post_init__(self):
        if not (self.se >= 0) or math.isinf(self.se):
            raise ValueError(f"a standard error must be finite and >= 0, got {self.se}")

    def __str__(self) -> str:
        return format_measured(self)


def format_measured(m: Measured) -> str:
    """``0.812 ± 0.013`` (3 significant digits of the value; the s.e. to the same decimal place)."""
    if not math.isfinite(m.value):
        return str(m.value)
    if m.value == 0:
        digits = 3
    else:
        digits = max(0, 2 - int(math.floor(math.log10(abs(m.value)))))
    if abs(m.value) < 1e-3 and m.value != 0:
        text = f"{m.value:.3g}"
        return text if m.se == 0 else f"{text} ± {m.se:.2g}"
    text = f"{m.value:.{digits}f}"
    return text if m.se == 0 else f"{text} ± {m.se:.{digits}f}"


Operand = Union[str, float]


@dataclass(frozen=True)
class Outcome:
    """How one criterion came out: ``outcome`` (``held`` / ``unclear`` / ``not``), the difference
    ``margin`` in the claimed direction and ``z`` = margin / its standard error (∞ when exact)."""

    criterion: str
    outcome: str
    margin: float
    z: float


class Criterion:
    """A comparison of measured values; ``text`` says it in words for the report."""

    text: str

    def evaluate(self, values: Mapping[str, Measured]) -> Outcome:
        raise NotImplementedError

    @staticmethod
    def _get(values: Mapping[str, Measured], operand: Operand) -> Measured:
        if isinstance(operand, str):
            if operand not in values:
                raise KeyError(f"the criterion needs the measurement {operand!r}; the claim measured {sorted(values)}")
            return values[operand]
        return Measured(float(operand))

    @staticmethod
    def _outcome(text: str, margin: float, se: float) -> Outcome:
        if not math.isfinite(margin):
            return Outcome(text, "not", margin, float("nan"))
        z = math.inf if se == 0 else margin / se
        if margin > 0 and (se == 0 or z > Z_HELD):
            return Outcome(text, "held", margin, z)
        return Outcome(text, "unclear" if margin > 0 else "not", margin, z)


@dataclass(frozen=True)
class Less(Criterion):
    """``a < b − margin`` (``a``, ``b``: measurement names or numbers)."""

    a: Operand
    b: Operand
    margin: float = 0.0

    @property
    def text(self) -> str:
        return f"{self.a} < {self.b}" + (f" − {self.margin:g}" if self.margin else "")

    def evaluate(self, values):
        a, b = self._get(values, self.a), self._get(values, self.b)
        return self._outcome(self.text, b.value - self.margin - a.value, math.hypot(a.se, b.se))


@dataclass(frozen=True)
class Greater(Criterion):
    """``a > b + margin``."""

    a: Operand
    b: Operand
    margin: float = 0.0

    @property
    def text(self) -> str:
        return f"{self.a} > {self.b}" + (f" + {self.margin:g}" if self.margin else "")

    def evaluate(self, values):
        a, b = self._get(values, self.a), self._get(values, self.b)
        return self._outcome(self.text, a.value - b.value - self.margin, math.hypot(a.se, b.se))


@dataclass(frozen=True)
class Within(Criterion):
    """``|a − target| ≤ tol`` (an absolute tolerance; ``relative=True``: ``tol·|target|``)."""

    a: Operand
    target: float
    tol: float
    relative: bool = False

    @property
    def text(self) -> str:
        tol = f"{self.tol:g}·|{self.target:g}|" if self.relative else f"{self.tol:g}"
        return f"|{self.a} − {self.target:g}| ≤ {tol}"

    def evaluate(self, values):
        a = self._get(values, self.a)
        tol = self.tol * abs(self.target) if self.relative else self.tol
        return self._outcome(self.text, tol - abs(a.value - self.target), a.se)


def verdict(outcomes: list[Outcome]) -> str:
    """``held`` if every criterion held, ``not`` if none held and one went the other way, else ``partly``."""
    kinds = {o.outcome for o in outcomes}
    if not outcomes:
        raise ValueError("a claim needs at least one criterion")
    if kinds == {"held"}:
        return "held"
    if "held" not in kinds and "not" in kinds:
        return "not"
    return "partly"
