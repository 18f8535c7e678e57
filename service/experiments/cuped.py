"""CUPED: revenue adjusted by a pre-period covariate (Deng, Xu, Kohavi and Walker, 2013).

Each unit's revenue Y becomes Y - θ (X - mean X), X its pre-period value (spend before the
experiment) and θ = cov(X, Y) / var(X) over all units of every variant. Assignment does not
depend on X, so the adjusted means keep the same expected difference while the variance
falls by the share ρ² that X explains. From the aggregates, per variant:

    mean_adj = mean_Y - θ (mean_X - mean_X over all variants)
    var_adj  = var_Y - 2 θ cov(X, Y) + θ² var_X

and the adjusted moments go to the same Welch test as unadjusted revenue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.experiments.aggregates import Moments, VariantTotals


@dataclass(frozen=True)
class Cuped:
    """θ and each variant's adjusted revenue moments, in the order given."""

    theta: float
    adjusted: list[Moments]


def pooled_theta(variants: Sequence[VariantTotals]) -> float:
    """cov(X, Y) / var(X) over the units of every variant (0 when X does not vary)."""
    n = sum(v.units for v in variants)
    sx = sum(v.pre_sum for v in variants)
    sy = sum(v.revenue_sum for v in variants)
    sxx = sum(v.pre_sum_squares for v in variants)
    sxy = sum(v.pre_revenue_sum for v in variants)
    variance = sxx - sx * sx / n
    if variance <= 0:
        return 0.0
    return (sxy - sx * sy / n) / variance


def cuped(variants: Sequence[VariantTotals]) -> Cuped:
    """Revenue per unit of each variant, adjusted by the pre-period covariate."""
    theta = pooled_theta(variants)
    grand_mean = sum(v.pre_sum for v in variants) / sum(v.units for v in variants)
    adjusted = []
    for v in variants:
        y, x = v.revenue(), v.pre_period()
        variance = y.variance - 2 * theta * v.pre_revenue_covariance() + theta**2 * x.variance
        adjusted.append(
            Moments(
                n=v.units,
                mean=y.mean - theta * (x.mean - grand_mean),
                variance=max(variance, 0.0),
            )
        )
    return Cuped(theta=theta, adjusted=adjusted)
