"""The experiments API's documents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class IntervalOut(BaseModel):
    estimate: float | None
    low: float | None
    high: float | None


class MetricOut(BaseModel):
    """One metric of a treatment against the control."""

    control: float
    treatment: float
    absolute: IntervalOut  # treatment - control, with its confidence interval
    relative: IntervalOut  # treatment / control - 1
    p_value: float | None  # fixed horizon: z-test (conversion) or Welch's t (revenue)
    adjusted_p_value: float | None  # Holm over the treatments
    significant: bool  # at the fixed horizon, after Holm
    # Always valid (mSPRT): may be read every day; the default view while it runs.
    sequential_p_value: float | None
    sequential: IntervalOut
    chi_square_p_value: float | None = None  # conversion only
    # Revenue only: a percentile bootstrap interval of the difference in revenue per unit
    # (2,000 resamples; none above BOOTSTRAP_MAX_UNITS units, where Welch's is as good).
    bootstrap: IntervalOut | None = None


class TreatmentOut(BaseModel):
    name: str
    conversion: MetricOut
    revenue_per_unit: MetricOut
    probability_to_beat_control: float | None


class VariantOut(BaseModel):
    name: str
    weight: float  # the expected share of units
    units: int
    conversions: int
    conversion_rate: float | None
    revenue: float
    revenue_per_unit: float | None


class SampleRatioOut(BaseModel):
    p_value: float | None
    mismatch: bool  # p < 0.001: the split is broken, no comparison can be trusted


class PowerOut(BaseModel):
    minimum_effect: float  # the relative lift the sample size is for
    units_needed_per_variant: int | None
    smallest_variant: int


class ComparisonOut(BaseModel):
    control: str
    sample_ratio: SampleRatioOut
    cuped_theta: float | None
    treatments: list[TreatmentOut]


class ExperimentSummary(BaseModel):
    key: str
    ruleset: str | None
    description: str
    target: dict[str, str]
    status: str  # scheduled | running | stopped | undeclared
    start: datetime | None
    stop: datetime | None
    units: int


class ExperimentOut(ExperimentSummary):
    unit: str | None
    segment: str | None
    metric: dict[str, str]
    crossed_over: int  # units exposed to two variants (merged profiles), counted in their first
    variants: list[VariantOut]
    results: ComparisonOut | None  # None until every variant has two units
    holdout: ComparisonOut | None  # the holdout against the variants pooled
    guardrails: list[dict[str, Any]]
    power: PowerOut | None
    verdict: str


class SegmentBreakdownOut(BaseModel):
    segment: str
    units: int
    variants: list[VariantOut]
    results: ComparisonOut | None
    # Holm over the segments' primary (conversion, first treatment) p-values.
    adjusted_p_value: float | None


class SegmentsOut(BaseModel):
    key: str
    caveat: str
    segments: list[SegmentBreakdownOut]


class StopOut(BaseModel):
    key: str
    file: str
    stop: datetime
    diff: str
