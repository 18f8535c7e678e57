"""The statistics on simulated experiments with a known truth (seeded, kept small; the
bench runs them at full size)."""

from __future__ import annotations

import numpy as np
import pytest

from service.experiments.power import conversion_effect_size, conversion_units_per_variant, power_at
from service.experiments.simulation import (
    conversion_rejections,
    peeking_rejections,
    revenue_rejections,
    srm_flags,
)


def test_aa_false_positives_stay_near_alpha() -> None:
    rng = np.random.default_rng(11)
    rate = conversion_rejections(rng=rng, runs=1000, units=5000, rate=0.05)
    assert 0.03 <= rate <= 0.07
    revenue = revenue_rejections(rng=rng, runs=600, units=3000)
    assert 0.03 <= revenue <= 0.07


def test_the_sequential_test_holds_alpha_under_daily_peeking() -> None:
    rng = np.random.default_rng(12)
    args = {"runs": 300, "units_per_day": 800, "days": 14, "rate": 0.05}
    sequential = peeking_rejections(rng=rng, **args)
    assert sequential <= 0.05
    # The same looks with the fixed-horizon test go well past alpha.
    naive = peeking_rejections(rng=np.random.default_rng(12), sequential=False, **args)
    assert naive > 0.1


def test_a_planted_lift_is_detected_with_the_predicted_power() -> None:
    units = conversion_units_per_variant(baseline_rate=0.05, relative_mde=0.1, power=0.8)
    d = conversion_effect_size(baseline_rate=0.05, relative_mde=0.1)
    predicted = power_at(effect_size=d, units=units)
    rng = np.random.default_rng(13)
    detected = conversion_rejections(rng=rng, runs=300, units=units, rate=0.05, lift=0.1)
    assert detected == pytest.approx(predicted, abs=0.1)


def test_a_planted_sample_ratio_mismatch_is_flagged() -> None:
    # Each run draws its split around 52/48; about 99% of them reach p < 0.001.
    rng = np.random.default_rng(14)
    assert srm_flags(rng=rng, runs=200, units=20_000, observed_share=0.52) >= 0.97
    assert srm_flags(rng=rng, runs=200, units=20_000, observed_share=0.5) <= 0.01
