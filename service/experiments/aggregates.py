"""What the statistics read: per-variant sums, and the mean and variance taken from them.

A variant's aggregate holds its units (those assigned), how many converted, the sum and sum
of squares of revenue per unit, and, for CUPED, the same sums of a pre-period covariate
(spend before the experiment) and the sum of its products with revenue. Every statistic in
this package works from these numbers, so they can come from one SQL query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """A sample's size, mean and per-unit variance (ddof 1): all a normal test needs."""

    n: int
    mean: float
    variance: float

    @property
    def standard_error(self) -> float:
        return float(np.sqrt(self.variance / self.n))


@dataclass(frozen=True)
class VariantTotals:
    """One variant's aggregates (revenue and covariate sums may stay 0 when unused)."""

    name: str
    units: int
    conversions: int = 0
    revenue_sum: float = 0.0
    revenue_sum_squares: float = 0.0
    pre_sum: float = 0.0
    pre_sum_squares: float = 0.0
    pre_revenue_sum: float = 0.0  # the sum of pre-period value x revenue, unit by unit

    def __post_init__(self) -> None:
        if self.units < 2:
            raise ValueError(f"variant {self.name!r}: two units at least")
        if not 0 <= self.conversions <= self.units:
            raise ValueError(f"variant {self.name!r}: conversions must be within [0, units]")

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.units

    def conversion(self) -> Moments:
        """Conversion as a 0/1 metric: mean p, variance p(1 - p) (the binomial's, ddof 0)."""
        p = self.conversion_rate
        return Moments(n=self.units, mean=p, variance=p * (1.0 - p))

    def revenue(self) -> Moments:
        """Revenue per unit: its mean and sample variance."""
        return _moments(self.units, self.revenue_sum, self.revenue_sum_squares)

    def pre_period(self) -> Moments:
        """The pre-period covariate per unit: its mean and sample variance."""
        return _moments(self.units, self.pre_sum, self.pre_sum_squares)

    def pre_revenue_covariance(self) -> float:
        """The sample covariance (ddof 1) of the pre-period covariate and revenue."""
        n = self.units
        cross = self.pre_revenue_sum - self.pre_sum * self.revenue_sum / n
        return cross / (n - 1)


def _moments(n: int, total: float, squares: float) -> Moments:
    mean = total / n
    variance = max((squares - total * mean) / (n - 1), 0.0)
    return Moments(n=n, mean=mean, variance=variance)


def totals_from_units(
    *,
    name: str,
    revenue: Sequence[float] | np.ndarray,
    converted: Sequence[bool] | np.ndarray | None = None,
    pre_period: Sequence[float] | np.ndarray | None = None,
) -> VariantTotals:
    """The aggregates of unit-level values (conversion defaults to revenue > 0)."""
    y = np.asarray(revenue, dtype=float)
    c = y > 0 if converted is None else np.asarray(converted, dtype=bool)
    x = np.zeros_like(y) if pre_period is None else np.asarray(pre_period, dtype=float)
    return VariantTotals(
        name=name,
        units=len(y),
        conversions=int(c.sum()),
        revenue_sum=float(y.sum()),
        revenue_sum_squares=float((y * y).sum()),
        pre_sum=float(x.sum()),
        pre_sum_squares=float((x * x).sum()),
        pre_revenue_sum=float((x * y).sum()),
    )
