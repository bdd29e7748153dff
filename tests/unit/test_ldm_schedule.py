"""LDM's "linear" schedule (Rombach et al. 2022; CompVis ``make_beta_schedule("linear")``): linear in √β from
0.0015 to 0.0195 over T = 1000 steps — not DDPM's linear-in-β table."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import pytest
from hydra.utils import instantiate

from diffzoo.config import compose_config
from diffzoo.schedules import DiscreteSchedule, linear_betas, sqrt_linear_betas

T, B0, B1 = 1000, 0.0015, 0.0195


def _sum_betas() -> float:
    # β_i = (a + (b − a) i/(T − 1))², i = 0 … T − 1, with a = √β_0, b = √β_1:
    # Σβ = T a² + a (b − a) T + (b − a)² T (2T − 1) / (6 (T − 1))   (Σi = T(T−1)/2, Σi² = (T−1)T(2T−1)/6)
    a, b = math.sqrt(B0), math.sqrt(B1)
    return T * a * a + a * (b - a) * T + (b - a) ** 2 * T * (2 * T - 1) / (6 * (T - 1))


def test_alpha_bar_T_is_1_42e_4():
    ac_T = DiscreteSchedule(sqrt_linear_betas(T, B0, B1)).alphas_cumprod[-1].item()
    # closed-form sandwich: −β/(1 − β) ≤ log(1 − β) ≤ −β, so exp(−Σβ/(1 − β_max)) ≤ ᾱ_T ≤ exp(−Σβ)
    s = _sum_betas()
    assert math.exp(-s / (1 - B1)) <= ac_T <= math.exp(-s)
    # the definition ᾱ_T = Π(1 − β_i) evaluated with 50-digit decimals, independent of torch's float64
    getcontext().prec = 50
    a, b = Decimal(B0).sqrt(), Decimal(B1).sqrt()
    exact = 1
    for i in range(T):
        exact *= 1 - (a + (b - a) * i / (T - 1)) ** 2
    assert ac_T == pytest.approx(float(exact), rel=1e-9)
    assert round(ac_T, 6) == pytest.approx(1.42e-4)  # the number quoted for LDM's schedule (1.4230e-4)


def test_differs_from_ddpm_linear():
    ldm, ddpm = sqrt_linear_betas(T, B0, B1), linear_betas(T)
    assert ldm[0].item() == pytest.approx(B0) and ldm[-1].item() == pytest.approx(B1)
    # midpoint: ((√β_0 + √β_1)/2)² = 0.00795... < (β_0 + β_1)/2 = 0.0105 (linear in √β bows below the chord)
    mid_sqrt = ((math.sqrt(B0) + math.sqrt(B1)) / 2) ** 2
    assert sqrt_linear_betas(3, B0, B1)[1].item() == pytest.approx(mid_sqrt, rel=1e-12)
    assert DiscreteSchedule(ddpm).alphas_cumprod[-1].item() == pytest.approx(4.036e-5, rel=1e-3)
    assert DiscreteSchedule(ldm).alphas_cumprod[-1].item() / DiscreteSchedule(ddpm).alphas_cumprod[-1].item() > 3


def test_ldm_experiments_use_it():
    for name in ("ldm_kl_f4_fashion_mnist", "ldm_vq_f4_fashion_mnist", "ldm_f1_fashion_mnist"):
        cfg = compose_config("train", [f"experiment={name}"])
        betas = instantiate(cfg.schedule).betas
        assert betas.shape == (T,) and betas[0].item() == pytest.approx(B0) and betas[-1].item() == pytest.approx(B1)
        assert (betas.sqrt().diff() - betas.sqrt().diff()[0]).abs().max().item() < 1e-12  # linear in √β
