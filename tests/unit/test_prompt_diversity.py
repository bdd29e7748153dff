"""Per-prompt mean pairwise distance against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from diffzoo.metrics.diversity import prompt_diversity


def test_closed_forms():
    # prompt 0: the three corners of a right triangle with legs 3, 4 (distances 3, 4, 5 → mean 4);
    # prompt 1: two identical samples (0); prompt 2: a single sample (left out)
    f = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    ids = torch.tensor([0, 0, 0, 1, 1, 2])
    out = prompt_diversity(f, ids)
    assert out["prompts"] == 2 and out["diversity"] == pytest.approx(2.0)
    assert out["diversity_se"] == pytest.approx(math.sqrt(8.0) / math.sqrt(2))  # std of (4, 0) over √2


def test_gaussian_expectation():
    # E‖x − y‖ for x, y ~ N(0, I_d) is 2·Γ((d+1)/2)/Γ(d/2); 200 prompts of 20 samples each
    d, gen = 8, torch.Generator().manual_seed(0)
    f = torch.randn(4000, d, generator=gen, dtype=torch.float64)
    out = prompt_diversity(f, torch.arange(4000) % 200)
    expected = 2 * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    assert abs(out["diversity"] - expected) < 4 * out["diversity_se"] + 1e-9


def test_errors():
    with pytest.raises(ValueError, match="two samples"):
        prompt_diversity(torch.zeros(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        prompt_diversity(torch.zeros(3), torch.arange(3))
