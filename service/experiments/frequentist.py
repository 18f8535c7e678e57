"""Fixed-horizon comparisons of a treatment with the control, from aggregates.

Conversion: the two-proportion z-test (statsmodels `proportions_ztest`, pooled variance),
the chi-square test of the 2x2 table (scipy `chi2_contingency`, no continuity
correction: the same p-value as the z-test), the Wald interval of the absolute lift
(statsmodels `confint_proportions_2indep`), and the delta-method interval of the relative
lift. Revenue per unit: Welch's t-test (scipy `ttest_ind_from_stats`) with its interval,
the delta-method relative interval, and a bootstrap interval from unit-level values
(scipy `bootstrap`) when they are at hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from service.experiments.aggregates import Moments, VariantTotals


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided confidence interval."""

    estimate: float
    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        return not self.low <= value <= self.high


@dataclass(frozen=True)
class Significance:
    """A test statistic and its two-sided p-value."""

    statistic: float
    p_value: float


@dataclass(frozen=True)
class Comparison:
    """A treatment against the control: the test, and the absolute and relative lifts."""

    test: Significance
    absolute: Interval
    relative: Interval


def relative_lift(*, control: Moments, treatment: Moments, alpha: float = 0.05) -> Interval:
    """(mean_t / mean_c) - 1 with its delta-method normal interval.

    Var ≈ var_t / (n_t mean_c²) + mean_t² var_c / (n_c mean_c⁴): the first-order expansion
    of the ratio of two independent means. Undefined (NaN) when the control's mean is 0.
    """
    if control.mean == 0:
        return Interval(estimate=float("nan"), low=float("nan"), high=float("nan"))
    ratio = treatment.mean / control.mean
    variance = treatment.variance / (treatment.n * control.mean**2) + (
        treatment.mean**2 * control.variance / (control.n * control.mean**4)
    )
    half = float(stats.norm.ppf(1 - alpha / 2)) * float(np.sqrt(variance))
    return Interval(estimate=ratio - 1, low=ratio - 1 - half, high=ratio - 1 + half)


def conversion_z_test(*, control: VariantTotals, treatment: VariantTotals) -> Significance:
    """Two-proportion z-test with the pooled variance under the null."""
    z, p = proportions_ztest(
        [treatment.conversions, control.conversions], [treatment.units, control.units]
    )
    return Significance(statistic=float(z), p_value=float(p))


def conversion_chi_square(*, control: VariantTotals, treatment: VariantTotals) -> Significance:
    """Pearson's chi-square on the 2x2 table converted / not, without Yates' correction."""
    table = [
        [control.conversions, control.units - control.conversions],
        [treatment.conversions, treatment.units - treatment.conversions],
    ]
    if 0 in (sum(row[0] for row in table), sum(row[1] for row in table)):
        return Significance(
            statistic=float("nan"), p_value=float("nan")
        )  # nobody (or all) converted
    result = stats.chi2_contingency(table, correction=False)
    return Significance(statistic=float(result.statistic), p_value=float(result.pvalue))


def compare_conversion(
    *, control: VariantTotals, treatment: VariantTotals, alpha: float = 0.05
) -> Comparison:
    """z-test, Wald interval of p_t - p_c, and delta-method interval of p_t / p_c - 1."""
    low, high = confint_proportions_2indep(
        treatment.conversions,
        treatment.units,
        control.conversions,
        control.units,
        method="wald",
        compare="diff",
        alpha=alpha,
    )
    absolute = Interval(
        estimate=treatment.conversion_rate - control.conversion_rate,
        low=float(low),
        high=float(high),
    )
    return Comparison(
        test=conversion_z_test(control=control, treatment=treatment),
        absolute=absolute,
        relative=relative_lift(
            control=control.conversion(), treatment=treatment.conversion(), alpha=alpha
        ),
    )


def welch_degrees_of_freedom(*, control: Moments, treatment: Moments) -> float:
    """The Welch-Satterthwaite degrees of freedom (NaN when neither sample varies, as
    scipy's test then gives no p-value either)."""
    a = control.variance / control.n
    b = treatment.variance / treatment.n
    denominator = a**2 / (control.n - 1) + b**2 / (treatment.n - 1)
    return (a + b) ** 2 / denominator if denominator > 0 else float("nan")


def compare_means(*, control: Moments, treatment: Moments, alpha: float = 0.05) -> Comparison:
    """Welch's t-test of mean_t - mean_c, its t interval, and the relative lift."""
    t, p = stats.ttest_ind_from_stats(
        treatment.mean,
        np.sqrt(treatment.variance),
        treatment.n,
        control.mean,
        np.sqrt(control.variance),
        control.n,
        equal_var=False,
    )
    difference = treatment.mean - control.mean
    se = float(np.sqrt(control.variance / control.n + treatment.variance / treatment.n))
    dof = welch_degrees_of_freedom(control=control, treatment=treatment)
    half = float(stats.t.ppf(1 - alpha / 2, dof)) * se
    return Comparison(
        test=Significance(statistic=float(t), p_value=float(p)),
        absolute=Interval(estimate=difference, low=difference - half, high=difference + half),
        relative=relative_lift(control=control, treatment=treatment, alpha=alpha),
    )


def compare_revenue(
    *, control: VariantTotals, treatment: VariantTotals, alpha: float = 0.05
) -> Comparison:
    """Welch's t-test on revenue per unit."""
    return compare_means(control=control.revenue(), treatment=treatment.revenue(), alpha=alpha)


def _difference_of_means(treatment: np.ndarray, control: np.ndarray, axis: int) -> np.ndarray:
    difference: np.ndarray = np.mean(treatment, axis=axis) - np.mean(control, axis=axis)
    return difference


def bootstrap_difference(
    *,
    control: Sequence[float] | np.ndarray,
    treatment: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    resamples: int = 2000,
    seed: int = 0,
    method: str = "percentile",
) -> Interval:
    """A bootstrap interval of mean_t - mean_c from unit-level values (scipy `bootstrap`,
    each group resampled on its own)."""
    c = np.asarray(control, dtype=float)
    t = np.asarray(treatment, dtype=float)
    result = stats.bootstrap(
        (t, c),
        _difference_of_means,
        n_resamples=resamples,
        confidence_level=1 - alpha,
        method=method,
        vectorized=True,
        batch=max(1, min(resamples, 20_000_000 // max(len(c) + len(t), 1))),
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(estimate=float(t.mean() - c.mean()), low=float(ci.low), high=float(ci.high))
