"""diffzoo — the classic diffusion and score-based papers, each implemented faithfully.

Sub-packages: ``schedules`` (forward processes), ``parameterization`` (reverse-process moments),
``objectives`` (training losses), ``samplers`` (one function per sampler), ``networks``,
``data``, ``lit`` (LightningModules), ``callbacks``, ``metrics``, ``optim``.
"""

__version__ = "0.1.0"
