"""Sample ratio, Holm, the sequential test's formula, the probability to beat control,
sample size, and the whole-experiment report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from service.experiments.aggregates import Moments, VariantTotals, totals_from_units
from service.experiments.bayesian import probability_to_beat
from service.experiments.checks import holm, sample_ratio_mismatch
from service.experiments.power import (
    conversion_effect_size,
    conversion_units_per_variant,
    power_at,
    revenue_units_per_variant,
)
from service.experiments.report import analyze
from service.experiments.sequential import mixing_variance, running_minimum, sequential_test


def test_a_52_48_split_of_20k_units_is_a_mismatch() -> None:
    srm = sample_ratio_mismatch(units=[10_400, 9_600], weights=[50, 50])
    assert srm.statistic == pytest.approx(32.0)
    assert srm.p_value == pytest.approx(stats.chi2.sf(32.0, df=1))
    assert srm.mismatch
    assert not sample_ratio_mismatch(units=[10_080, 9_920], weights=[1, 1]).mismatch
    uneven = sample_ratio_mismatch(units=[5_950, 2_050, 2_000], weights=[0.6, 0.2, 0.2])
    assert not uneven.mismatch


def test_holm_steps_down() -> None:
    raw = [0.01, 0.04, 0.03, 0.005]
    corrected = holm(raw)
    # By hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then the running maximum.
    assert corrected.p_values == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert corrected.rejected == [True, False, False, True]
    assert holm([]).p_values == []


def test_the_msprt_p_value_is_growthbooks_rho_form() -> None:
    control = Moments(n=4000, mean=10.0, variance=90.0)
    treatment = Moments(n=4200, mean=10.6, variance=110.0)
    result = sequential_test(control=control, treatment=treatment, alpha=0.05)
    n = 8200
    se2 = 90 / 4000 + 110 / 4200
    rho2 = (-2 * math.log(0.05) + math.log(1 - 2 * math.log(0.05))) / 5000
    st2 = 0.6**2 * n / se2  # the squared statistic as GrowthBook writes it
    e_value = math.exp(rho2 * st2 / (2 * (n * rho2 + 1))) / math.sqrt(n * rho2 + 1)
    assert result.p_value == pytest.approx(min(1.0, 1 / e_value), rel=1e-9)
    assert result.mixing_variance == pytest.approx(
        mixing_variance(standard_error=math.sqrt(se2), n=n, alpha=0.05, tuning_sample_size=5000)
    )


def test_the_msprt_interval_is_where_the_shifted_test_stops_rejecting() -> None:
    control = Moments(n=5000, mean=0.05, variance=0.05 * 0.95)
    treatment = Moments(n=5000, mean=0.058, variance=0.058 * 0.942)
    tau2 = 1e-4
    result = sequential_test(control=control, treatment=treatment, tau_squared=tau2)
    for bound in (result.low, result.high):
        shifted = Moments(n=5000, mean=treatment.mean - bound, variance=treatment.variance)
        p = sequential_test(control=control, treatment=shifted, tau_squared=tau2).p_value
        assert p == pytest.approx(0.05, rel=1e-6)
    # Wider than the fixed-horizon interval, the price of looking at any time.
    se = math.sqrt(control.variance / 5000 + treatment.variance / 5000)
    assert result.high - result.estimate > 1.96 * se
    assert running_minimum([0.5, 0.2, 0.3, 0.1]) == [0.5, 0.2, 0.2, 0.1]


def test_the_closed_form_probability_matches_sampling() -> None:
    rng = np.random.default_rng(5)
    control = VariantTotals(name="c", units=4000, conversions=200)
    treatment = VariantTotals(name="t", units=4100, conversions=228)
    exact = probability_to_beat(control=control, treatment=treatment)
    a = rng.beta(1 + 200, 1 + 3800, 400_000)
    b = rng.beta(1 + 228, 1 + 3872, 400_000)
    assert exact == pytest.approx(float(np.mean(b > a)), abs=0.003)
    reverse = probability_to_beat(control=treatment, treatment=control)
    assert exact + reverse == pytest.approx(1.0, abs=1e-9)
    normal = probability_to_beat(control=control, treatment=treatment, exact_limit=0)
    assert normal == pytest.approx(exact, abs=0.005)
    same = VariantTotals(name="s", units=4000, conversions=200)
    assert probability_to_beat(control=control, treatment=same) == pytest.approx(0.5, abs=1e-9)


def test_sample_size_matches_the_closed_form() -> None:
    p1, p2 = 0.05, 0.055
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    closed = z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2
    n = conversion_units_per_variant(baseline_rate=0.05, relative_mde=0.1)
    assert n == pytest.approx(closed, abs=2)
    d = conversion_effect_size(baseline_rate=0.05, relative_mde=0.1)
    assert power_at(effect_size=d, units=n) == pytest.approx(0.8, abs=0.001)
    revenue = revenue_units_per_variant(mean=40, std=120, relative_mde=0.05)
    assert revenue == pytest.approx(2 * z**2 * 120**2 / (0.05 * 40) ** 2, abs=2)
    with pytest.raises(ValueError, match="within"):
        conversion_units_per_variant(baseline_rate=0.95, relative_mde=0.1)


def test_the_report_reads_every_treatment_against_the_control() -> None:
    rng = np.random.default_rng(6)
    n = 6000
    groups = []
    for name, lift in (("control", 1.0), ("b", 1.0), ("c", 1.15)):
        pre = rng.gamma(1.5, 30, n)
        revenue = np.where(rng.random(n) < 0.05 * lift, 0.5 * pre + rng.gamma(2, 20, n), 0.0)
        groups.append(totals_from_units(name=name, revenue=revenue, pre_period=pre))
    report = analyze(variants=groups, weights=[1, 1, 1])
    assert report.control == "control"
    assert [t.name for t in report.treatments] == ["b", "c"]
    assert not report.sample_ratio.mismatch
    assert report.cuped_theta is not None
    assert report.cuped_theta > 0
    for t in report.treatments:
        for metric in (t.conversion, t.revenue):
            assert metric.adjusted_p_value >= metric.comparison.test.p_value
            assert metric.sequential.p_value >= metric.comparison.test.p_value
        assert 0 <= t.probability_to_beat <= 1
    assert report.treatments[1].probability_to_beat > 0.9
    with pytest.raises(ValueError, match="control"):
        analyze(variants=groups[:1], weights=[1])


def test_the_sequential_test_on_degenerate_input() -> None:
    flat = Moments(n=100, mean=0.0, variance=0.0)
    assert sequential_test(control=flat, treatment=flat).p_value == 1.0
    some = Moments(n=100, mean=1.0, variance=1.0)
    with pytest.raises(ValueError, match="mixing variance"):
        sequential_test(control=some, treatment=some, tau_squared=0.0)
