"""Simulated experiments that check the statistics behave as they claim.

Each function runs many two-variant experiments with a known truth (no effect, or a
planted relative lift, or a planted sample-ratio mismatch) from a seeded numpy generator
and returns the share of runs in which the test rejected. Under no effect that share is the
false-positive rate; under a planted lift it is the power. The tests run them small, the
bench (`bench/experiments.py`) at full size.
"""

from __future__ import annotations

import numpy as np

from service.experiments.aggregates import VariantTotals, totals_from_units
from service.experiments.checks import sample_ratio_mismatch
from service.experiments.frequentist import compare_revenue, conversion_z_test
from service.experiments.sequential import TUNING_SAMPLE_SIZE, sequential_test


def _conversion_pair(
    rng: np.random.Generator, *, units: int, rate: float, lift: float
) -> tuple[VariantTotals, VariantTotals]:
    control = VariantTotals(name="control", units=units, conversions=int(rng.binomial(units, rate)))
    converted = int(rng.binomial(units, rate * (1 + lift)))
    return control, VariantTotals(name="treatment", units=units, conversions=converted)


def conversion_rejections(
    *,
    rng: np.random.Generator,
    runs: int,
    units: int,
    rate: float,
    lift: float = 0.0,
    alpha: float = 0.05,
) -> float:
    """The share of runs whose two-proportion z-test at the horizon has p < alpha."""
    rejected = 0
    for _ in range(runs):
        control, treatment = _conversion_pair(rng, units=units, rate=rate, lift=lift)
        rejected += conversion_z_test(control=control, treatment=treatment).p_value < alpha
    return rejected / runs


def revenue_rejections(
    *,
    rng: np.random.Generator,
    runs: int,
    units: int,
    rate: float = 0.05,
    mean_order: float = 60.0,
    lift: float = 0.0,
    alpha: float = 0.05,
) -> float:
    """The share of runs whose Welch test on skewed revenue per unit has p < alpha."""
    rejected = 0
    for _ in range(runs):
        groups = []
        for factor in (1.0, 1.0 + lift):
            bought = rng.random(units) < rate
            amount = rng.lognormal(np.log(mean_order * factor) - 0.32, 0.8, units)
            groups.append(totals_from_units(name="v", revenue=np.where(bought, amount, 0.0)))
        rejected += compare_revenue(control=groups[0], treatment=groups[1]).test.p_value < alpha
    return rejected / runs


def peeking_rejections(
    *,
    rng: np.random.Generator,
    runs: int,
    units_per_day: int,
    days: int,
    rate: float,
    lift: float = 0.0,
    alpha: float = 0.05,
    sequential: bool = True,
    tuning_sample_size: float = TUNING_SAMPLE_SIZE,
) -> float:
    """The share of runs rejected at any of the daily looks: by the always-valid mSPRT
    p-value (`sequential`), or by the fixed-horizon z-test read every day."""
    rejected = 0
    for _ in range(runs):
        daily_c = rng.binomial(units_per_day, rate, days).cumsum()
        daily_t = rng.binomial(units_per_day, rate * (1 + lift), days).cumsum()
        for day in range(days):
            n = units_per_day * (day + 1)
            control = VariantTotals(name="c", units=n, conversions=int(daily_c[day]))
            treatment = VariantTotals(name="t", units=n, conversions=int(daily_t[day]))
            if sequential:
                p = sequential_test(
                    control=control.conversion(),
                    treatment=treatment.conversion(),
                    alpha=alpha,
                    tuning_sample_size=tuning_sample_size,
                ).p_value
            else:
                p = conversion_z_test(control=control, treatment=treatment).p_value
            if p < alpha:
                rejected += 1
                break
    return rejected / runs


def srm_flags(*, rng: np.random.Generator, runs: int, units: int, observed_share: float) -> float:
    """The share of runs flagged as a sample-ratio mismatch when a 50/50 split is expected
    and each unit lands in the first variant with `observed_share`."""
    flagged = 0
    for _ in range(runs):
        first = int(rng.binomial(units, observed_share))
        flagged += sample_ratio_mismatch(units=[first, units - first], weights=[1, 1]).mismatch
    return flagged / runs
