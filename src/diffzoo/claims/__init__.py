"""The reproduction report: each paper's CPU-checkable claims, re-run by one command.

``python -m diffzoo.claims [names…] [--quick]`` (``make claims``) trains what every claim needs
through the normal experiments (reusing runs whose config is unchanged), measures, compares with
criteria fixed before the run (:mod:`diffzoo.claims.criteria`) and writes ``docs/claims.md``,
``docs/claims.json`` and ``docs/claims/*.png``. Claims are registered in :mod:`diffzoo.claims.papers`
with :func:`claim`; those that need a paper's own compute with :func:`full_scale`.
"""

from .context import Context, TrainedRun
from .criteria import Greater, Less, Measured, Within, verdict
from .registry import CLAIMS, FULL_SCALE, PAPERS, Claim, Result, claim, full_scale
from .runner import main, run_claims

__all__ = ["Context", "TrainedRun", "Measured", "Less", "Greater", "Within", "verdict", "CLAIMS", "FULL_SCALE", "PAPERS",
           "Claim", "Result", "claim", "full_scale", "run_claims", "main"]
