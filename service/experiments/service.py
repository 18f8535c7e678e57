"""The experiments as the API and the CLI show them: those the active rule files declare
(and any still holding exposures after their declaration was removed), each with its
results (results.py) and a verdict in words."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.experiments import repository, results
from service.experiments.aggregates import VariantTotals
from service.experiments.checks import holm
from service.experiments.declared import Declared, catalogue
from service.experiments.frequentist import Interval, bootstrap_difference, conversion_chi_square
from service.experiments.report import MetricReport, Report
from service.experiments.schemas import (
    ComparisonOut,
    ExperimentOut,
    ExperimentSummary,
    IntervalOut,
    MetricOut,
    PowerOut,
    SampleRatioOut,
    SegmentBreakdownOut,
    SegmentsOut,
    TreatmentOut,
    VariantOut,
)
from service.ruleset.runtime import RUNTIME

ALPHA = 0.05
BOOTSTRAP_MAX_UNITS = 100_000
CAVEAT = (
    "Each segment is a separate comparison: with many segments some differ by chance. "
    "adjusted_p_value is Holm-corrected across the segments; read it, not the raw one."
)


def declared(session: Session) -> dict[str, Declared]:
    return catalogue(RUNTIME.active(session).rulesets).by_key


def status(spec_declared: Declared | None, now: datetime) -> str:
    if spec_declared is None:
        return "undeclared"
    spec = spec_declared.spec
    if spec.start is not None and now < spec.start:
        return "scheduled"
    return "running" if spec_declared.running(now) else "stopped"


def list_experiments(session: Session, *, now: datetime) -> list[ExperimentSummary]:
    known = declared(session)
    exposed = repository.exposed_experiments(session)
    out = []
    for key in [*known, *sorted(set(exposed) - set(known))]:
        item = known.get(key)
        out.append(
            ExperimentSummary(
                key=key,
                ruleset=item.ruleset if item else None,
                description=item.spec.description if item else "",
                target=_target(item),
                status=status(item, now),
                start=item.spec.start if item else None,
                stop=item.spec.stop if item else None,
                units=exposed.get(key, (0,))[0],
            )
        )
    return out


def show(session: Session, key: str, *, now: datetime) -> ExperimentOut | None:
    item = declared(session).get(key)
    if item is None:
        return None
    data, crossed = results.read(session, item)
    found, report = results.analysis(data, item, alpha=ALPHA)
    control = found[0]
    needed = results.units_needed(item, control, alpha=ALPHA)
    sizes = [t.units if isinstance(t, VariantTotals) else t for t in found]
    comparison = _comparison(report, found, bootstrap=_bootstraps(data, item)) if report else None
    held = results.holdout_report(data, item, alpha=ALPHA)
    guardrails = results.guardrail_p_values(data, item)
    return ExperimentOut(
        key=key,
        ruleset=item.ruleset,
        description=item.spec.description,
        target=_target(item),
        status=status(item, now),
        start=item.spec.start,
        stop=item.spec.stop,
        units=len(data.units),
        unit=item.spec.unit,
        segment=item.spec.segment,
        metric=item.spec.metric.model_dump(),
        crossed_over=crossed,
        variants=_variants(found, item),
        results=comparison,
        holdout=_comparison(*held[::-1]) if held else None,
        guardrails=guardrails,
        power=PowerOut(
            minimum_effect=item.spec.minimum_effect,
            units_needed_per_variant=needed,
            smallest_variant=min(sizes),
        ),
        verdict=verdict(
            report, needed=needed, smallest=min(sizes), item=item, guardrails=guardrails
        ),
    )


def by_segment(session: Session, key: str) -> SegmentsOut | None:
    item = declared(session).get(key)
    if item is None:
        return None
    data, _ = results.read(session, item)
    names = sorted({s for u in data.units for s in u.segments})
    rows = []
    for name in names:
        mask = np.array([name in u.segments for u in data.units], dtype=bool)
        found, report = results.analysis(data, item, mask=mask, alpha=ALPHA)
        rows.append((name, int(mask.sum()), found, report))
    primary = [r.treatments[0].conversion.comparison.test.p_value for *_, r in rows if r]
    adjusted = iter(holm(primary, alpha=ALPHA).p_values if primary else [])
    return SegmentsOut(
        key=key,
        caveat=CAVEAT,
        segments=[
            SegmentBreakdownOut(
                segment=name,
                units=units,
                variants=_variants(found, item),
                results=_comparison(report, found) if report else None,
                adjusted_p_value=_num(next(adjusted)) if report else None,
            )
            for name, units, found, report in rows
        ],
    )


def verdict(
    report: Report | None,
    *,
    needed: int | None,
    smallest: int,
    item: Declared,
    guardrails: list[dict[str, Any]] | None = None,
) -> str:
    """What the numbers allow saying, in words. While it runs, the always-valid
    (sequential) conversion p-values decide, Holm-adjusted over the treatments; once every
    variant has the planned units, the fixed-horizon ones too. A guardrail that rises
    significantly in a treatment is said first."""
    if report is None:
        return "Collecting: every variant needs two exposed units before anything is computed."
    if report.sample_ratio.mismatch:
        return (
            f"Sample ratio mismatch (p = {report.sample_ratio.p_value:.2g}): units do not split "
            "as the weights say, so no comparison can be trusted. Find the cause first."
        )
    warnings = [
        f"Guardrail {g['event']} rises in {row['variant']} (p = {row['p_value']:.2g})."
        for g in guardrails or []
        for row in g["treatments"]
        if row["p_value"] is not None
        and row["p_value"] < ALPHA
        and row["rate"] > row["control_rate"]
    ]
    sequential = holm([_p(t.conversion.sequential.p_value) for t in report.treatments], alpha=ALPHA)
    planned = needed is not None and smallest >= needed
    decided = [
        (t, sequential.rejected[i] or (planned and t.conversion.significant))
        for i, t in enumerate(report.treatments)
    ]
    winners = [
        t.name for t, yes in decided if yes and t.conversion.comparison.absolute.estimate > 0
    ]
    losers = [t.name for t, yes in decided if yes and t.conversion.comparison.absolute.estimate < 0]
    if winners:
        said = (
            f"{', '.join(winners)} converts better than {report.control}. To ship it, make its "
            f"change the target's own in {item.ruleset}'s file and remove the experiment (or "
            "set `stop:`), then deploy."
        )
    elif losers:
        said = f"{', '.join(losers)} converts worse than {report.control}: stop it."
    elif planned:
        said = (
            f"No difference found with {smallest} units per variant (enough for a "
            f"{item.spec.minimum_effect:.0%} lift): stop and keep {report.control}."
        )
    else:
        more = f" ({needed - smallest} more per variant)" if needed else ""
        said = f"Keep running: no difference can be told apart yet{more}."
    return " ".join([*warnings, said])


def _p(value: float) -> float:
    return value if math.isfinite(value) else 1.0


def _bootstraps(data: results.Outcomes, item: Declared) -> dict[str, Interval]:
    """Each treatment's bootstrap interval of revenue per unit against the control."""
    if len(data.units) > BOOTSTRAP_MAX_UNITS:
        return {}
    variant = np.array([u.variant for u in data.units], dtype=object)
    control = data.revenue[variant == item.control]
    return {
        name: bootstrap_difference(
            control=control, treatment=data.revenue[variant == name], alpha=ALPHA
        )
        for name in list(item.weights)[1:]
    }


def _comparison(
    report: Report,
    found: list[VariantTotals | int],
    *,
    bootstrap: dict[str, Interval] | None = None,
) -> ComparisonOut:
    control = found[0]
    assert isinstance(control, VariantTotals)
    treatments = []
    for t, totals in zip(report.treatments, found[1:], strict=True):
        assert isinstance(totals, VariantTotals)
        conversion = _metric(t.conversion, control.conversion_rate, totals.conversion_rate)
        conversion.chi_square_p_value = _num(
            conversion_chi_square(control=control, treatment=totals).p_value
        )
        revenue = _metric(
            t.revenue, control.revenue_sum / control.units, totals.revenue_sum / totals.units
        )
        if bootstrap and t.name in bootstrap:
            revenue.bootstrap = _interval(bootstrap[t.name])
        treatments.append(
            TreatmentOut(
                name=t.name,
                conversion=conversion,
                revenue_per_unit=revenue,
                probability_to_beat_control=_num(t.probability_to_beat),
            )
        )
    return ComparisonOut(
        control=report.control,
        sample_ratio=SampleRatioOut(
            p_value=_num(report.sample_ratio.p_value), mismatch=report.sample_ratio.mismatch
        ),
        cuped_theta=_num(report.cuped_theta) if report.cuped_theta is not None else None,
        treatments=treatments,
    )


def _metric(metric: MetricReport, control: float, treatment: float) -> MetricOut:
    return MetricOut(
        control=control,
        treatment=treatment,
        absolute=_interval(metric.comparison.absolute),
        relative=_interval(metric.comparison.relative),
        p_value=_num(metric.comparison.test.p_value),
        adjusted_p_value=_num(metric.adjusted_p_value),
        significant=metric.significant,
        sequential_p_value=_num(metric.sequential.p_value),
        sequential=IntervalOut(
            estimate=_num(metric.sequential.estimate),
            low=_num(metric.sequential.low),
            high=_num(metric.sequential.high),
        ),
    )


def _variants(found: list[VariantTotals | int], item: Declared) -> list[VariantOut]:
    out = []
    for (name, weight), totals in zip(item.weights.items(), found, strict=True):
        if isinstance(totals, VariantTotals):
            out.append(
                VariantOut(
                    name=name,
                    weight=weight,
                    units=totals.units,
                    conversions=totals.conversions,
                    conversion_rate=totals.conversion_rate,
                    revenue=totals.revenue_sum,
                    revenue_per_unit=totals.revenue_sum / totals.units,
                )
            )
        else:
            out.append(
                VariantOut(
                    name=name,
                    weight=weight,
                    units=totals,
                    conversions=0,
                    conversion_rate=None,
                    revenue=0.0,
                    revenue_per_unit=None,
                )
            )
    return out


def _target(item: Declared | None) -> dict[str, str]:
    if item is None:
        return {}
    return item.spec.target.model_dump(exclude_none=True)


def _interval(interval: Interval) -> IntervalOut:
    return IntervalOut(
        estimate=_num(interval.estimate), low=_num(interval.low), high=_num(interval.high)
    )


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
