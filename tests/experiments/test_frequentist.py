"""Fixed-horizon comparisons from aggregates, checked against scipy and statsmodels run on
the same numbers (unit-level data where the library wants it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from service.experiments.aggregates import VariantTotals, totals_from_units
from service.experiments.cuped import cuped
from service.experiments.frequentist import (
    bootstrap_difference,
    compare_conversion,
    compare_means,
    compare_revenue,
    conversion_chi_square,
    conversion_z_test,
    welch_degrees_of_freedom,
)
from service.experiments.report import analyze

CONTROL = VariantTotals(name="control", units=10_000, conversions=500)
TREATMENT = VariantTotals(name="treatment", units=10_200, conversions=575)


def revenue_units(rng: np.random.Generator, n: int, *, scale: float) -> np.ndarray:
    """Revenue per unit: most units spend nothing, the rest a skewed amount."""
    spent = rng.random(n) < 0.06
    return np.where(spent, rng.lognormal(mean=np.log(scale), sigma=0.8, size=n), 0.0)


def test_the_z_test_and_the_chi_square_agree() -> None:
    z = conversion_z_test(control=CONTROL, treatment=TREATMENT)
    chi = conversion_chi_square(control=CONTROL, treatment=TREATMENT)
    assert chi.statistic == pytest.approx(z.statistic**2, rel=1e-9)
    assert chi.p_value == pytest.approx(z.p_value, rel=1e-9)
    # The pooled z by hand, as a check on the arguments' order.
    p = (500 + 575) / (10_000 + 10_200)
    se = np.sqrt(p * (1 - p) * (1 / 10_000 + 1 / 10_200))
    assert z.statistic == pytest.approx((575 / 10_200 - 500 / 10_000) / se, rel=1e-9)


def test_conversion_intervals() -> None:
    result = compare_conversion(control=CONTROL, treatment=TREATMENT)
    p1, p2 = 0.05, 575 / 10_200
    half = 1.959964 * np.sqrt(p1 * (1 - p1) / 10_000 + p2 * (1 - p2) / 10_200)
    assert result.absolute.estimate == pytest.approx(p2 - p1)
    assert result.absolute.low == pytest.approx(p2 - p1 - half, rel=1e-5)
    assert result.absolute.high == pytest.approx(p2 - p1 + half, rel=1e-5)
    # The delta-method interval of the ratio is close to statsmodels' log-ratio one.
    low, high = confint_proportions_2indep(575, 10_200, 500, 10_000, compare="ratio")
    assert result.relative.estimate == pytest.approx(p2 / p1 - 1)
    width = result.relative.high - result.relative.low
    assert result.relative.low == pytest.approx(low - 1, abs=0.05 * width)
    assert result.relative.high == pytest.approx(high - 1, abs=0.05 * width)


def test_the_relative_interval_covers_the_true_lift() -> None:
    rng = np.random.default_rng(7)
    runs, n, p, lift = 1000, 20_000, 0.05, 0.1
    hits = 0
    for _ in range(runs):
        c = VariantTotals(name="c", units=n, conversions=int(rng.binomial(n, p)))
        t = VariantTotals(name="t", units=n, conversions=int(rng.binomial(n, p * (1 + lift))))
        interval = compare_conversion(control=c, treatment=t).relative
        hits += interval.low <= lift <= interval.high
    assert hits / runs == pytest.approx(0.95, abs=0.02)


def test_welch_on_aggregates_matches_scipy_on_units() -> None:
    rng = np.random.default_rng(1)
    c_units = revenue_units(rng, 3000, scale=40)
    t_units = revenue_units(rng, 3300, scale=46)
    control = totals_from_units(name="c", revenue=c_units)
    treatment = totals_from_units(name="t", revenue=t_units)
    ours = compare_revenue(control=control, treatment=treatment)
    theirs = stats.ttest_ind(t_units, c_units, equal_var=False)
    assert ours.test.statistic == pytest.approx(theirs.statistic, rel=1e-9)
    assert ours.test.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    ci = theirs.confidence_interval(0.95)
    assert ours.absolute.low == pytest.approx(ci.low, rel=1e-9)
    assert ours.absolute.high == pytest.approx(ci.high, rel=1e-9)
    dof = welch_degrees_of_freedom(control=control.revenue(), treatment=treatment.revenue())
    assert dof == pytest.approx(theirs.df, rel=1e-9)
    assert control.conversions == int((c_units > 0).sum())


def test_the_bootstrap_interval_is_close_to_welch_on_a_large_sample() -> None:
    rng = np.random.default_rng(2)
    c_units = revenue_units(rng, 4000, scale=40)
    t_units = revenue_units(rng, 4000, scale=44)
    welch = compare_revenue(
        control=totals_from_units(name="c", revenue=c_units),
        treatment=totals_from_units(name="t", revenue=t_units),
    ).absolute
    boot = bootstrap_difference(control=c_units, treatment=t_units, resamples=1000, seed=3)
    assert boot.estimate == pytest.approx(welch.estimate)
    width = welch.high - welch.low
    assert boot.low == pytest.approx(welch.low, abs=0.1 * width)
    assert boot.high == pytest.approx(welch.high, abs=0.1 * width)
    again = bootstrap_difference(control=c_units, treatment=t_units, resamples=1000, seed=3)
    assert again == boot  # seeded


def test_cuped_on_aggregates_matches_adjusting_each_unit() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    pre_c, pre_t = rng.gamma(2.0, 20.0, n), rng.gamma(2.0, 20.0, n)
    y_c = 0.8 * pre_c + rng.normal(0, 15, n)
    y_t = 0.8 * pre_t + rng.normal(2, 15, n)
    control = totals_from_units(name="c", revenue=y_c, pre_period=pre_c)
    treatment = totals_from_units(name="t", revenue=y_t, pre_period=pre_t)
    adjustment = cuped([control, treatment])
    x, y = np.concatenate([pre_c, pre_t]), np.concatenate([y_c, y_t])
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    assert adjustment.theta == pytest.approx(theta, rel=1e-9)
    adj_c, adj_t = y_c - theta * (pre_c - x.mean()), y_t - theta * (pre_t - x.mean())
    ours = compare_means(control=adjustment.adjusted[0], treatment=adjustment.adjusted[1])
    theirs = stats.ttest_ind(adj_t, adj_c, equal_var=False)
    assert ours.test.statistic == pytest.approx(theirs.statistic, rel=1e-7)
    assert ours.test.p_value == pytest.approx(theirs.pvalue, rel=1e-6)
    ci = theirs.confidence_interval(0.95)
    assert ours.absolute.low == pytest.approx(ci.low, rel=1e-7)
    # The variance falls by the share of it the covariate explains.
    rho = np.corrcoef(x, y)[0, 1]
    ratio = adjustment.adjusted[0].variance / control.revenue().variance
    assert ratio == pytest.approx(1 - rho**2, abs=0.03)
    plain = compare_revenue(control=control, treatment=treatment)
    assert ours.absolute.high - ours.absolute.low < 0.6 * (plain.absolute.high - plain.absolute.low)


def test_without_a_covariate_cuped_changes_nothing() -> None:
    adjustment = cuped([CONTROL, TREATMENT])
    assert adjustment.theta == 0
    assert adjustment.adjusted == [CONTROL.revenue(), TREATMENT.revenue()]


def test_samples_that_do_not_vary_give_no_p_value_like_scipy_and_no_error() -> None:
    # Nobody converted nor spent yet: an experiment's first hours. This raised
    # ZeroDivisionError in the Welch degrees of freedom, and the results API answered 500.
    control, treatment = VariantTotals(name="a", units=20), VariantTotals(name="b", units=22)
    flat = compare_means(control=control.revenue(), treatment=treatment.revenue())
    scipy_p = stats.ttest_ind_from_stats(0.0, 0.0, 22, 0.0, 0.0, 20, equal_var=False).pvalue
    assert math.isnan(flat.test.p_value)
    assert math.isnan(float(scipy_p))
    report = analyze(variants=[control, treatment], weights=[0.5, 0.5])
    assert math.isnan(report.treatments[0].revenue.comparison.test.p_value)
    assert report.sample_ratio.mismatch is False
    # scipy refuses the table (an expected count of 0); the test has no p-value either.
    with pytest.raises(ValueError, match="expected frequencies"):
        stats.chi2_contingency([[0, 20], [0, 22]], correction=False)
    assert math.isnan(conversion_chi_square(control=control, treatment=treatment).p_value)
