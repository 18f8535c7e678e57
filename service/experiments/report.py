"""A whole experiment read at once: the first variant is the control, each other is a
treatment compared with it.

The sample ratio is checked first (a mismatch makes every comparison suspect). For
conversion and revenue per unit, each treatment gets its fixed-horizon comparison with the
p-value Holm-adjusted over the treatments, the always-valid sequential result for
monitoring while the experiment runs, and, for conversion, the probability to beat control.
Revenue is CUPED-adjusted when the aggregates carry the pre-period covariate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.experiments.aggregates import Moments, VariantTotals
from service.experiments.bayesian import probability_to_beat
from service.experiments.checks import SampleRatio, holm, sample_ratio_mismatch
from service.experiments.cuped import cuped
from service.experiments.frequentist import Comparison, compare_conversion, compare_means
from service.experiments.sequential import TUNING_SAMPLE_SIZE, SequentialResult, sequential_test


@dataclass(frozen=True)
class MetricReport:
    """One metric of one treatment against the control."""

    comparison: Comparison
    adjusted_p_value: float
    significant: bool
    sequential: SequentialResult


@dataclass(frozen=True)
class TreatmentReport:
    name: str
    conversion: MetricReport
    revenue: MetricReport
    probability_to_beat: float


@dataclass(frozen=True)
class Report:
    control: str
    sample_ratio: SampleRatio
    cuped_theta: float | None
    treatments: list[TreatmentReport]


def _metric(
    moments: Sequence[Moments],
    comparisons: list[Comparison],
    *,
    alpha: float,
    tuning_sample_size: float,
) -> list[MetricReport]:
    corrected = holm([c.test.p_value for c in comparisons], alpha=alpha)
    return [
        MetricReport(
            comparison=comparison,
            adjusted_p_value=corrected.p_values[i],
            significant=corrected.rejected[i],
            sequential=sequential_test(
                control=moments[0],
                treatment=moments[i + 1],
                alpha=alpha,
                tuning_sample_size=tuning_sample_size,
            ),
        )
        for i, comparison in enumerate(comparisons)
    ]


def analyze(
    *,
    variants: Sequence[VariantTotals],
    weights: Sequence[float],
    alpha: float = 0.05,
    tuning_sample_size: float = TUNING_SAMPLE_SIZE,
) -> Report:
    """Every treatment against `variants[0]`, with the sample-ratio check."""
    if len(variants) < 2:
        raise ValueError("a control and one treatment at least")
    control, treatments = variants[0], variants[1:]
    uses_cuped = any(v.pre_sum_squares > 0 for v in variants)
    adjustment = cuped(variants) if uses_cuped else None
    revenue = adjustment.adjusted if adjustment else [v.revenue() for v in variants]
    conversion = [v.conversion() for v in variants]
    conversions = [
        compare_conversion(control=control, treatment=t, alpha=alpha) for t in treatments
    ]
    revenues = [compare_means(control=revenue[0], treatment=r, alpha=alpha) for r in revenue[1:]]
    conversion_reports = _metric(
        conversion, conversions, alpha=alpha, tuning_sample_size=tuning_sample_size
    )
    revenue_reports = _metric(revenue, revenues, alpha=alpha, tuning_sample_size=tuning_sample_size)
    return Report(
        control=control.name,
        sample_ratio=sample_ratio_mismatch(units=[v.units for v in variants], weights=weights),
        cuped_theta=adjustment.theta if adjustment else None,
        treatments=[
            TreatmentReport(
                name=t.name,
                conversion=conversion_reports[i],
                revenue=revenue_reports[i],
                probability_to_beat=probability_to_beat(control=control, treatment=t),
            )
            for i, t in enumerate(treatments)
        ],
    )
