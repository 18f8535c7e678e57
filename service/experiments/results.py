"""An experiment's results from its exposures: each unit counted once, in the variant of
its first exposure, with what it did in the metric's window after it (conversion, the
revenue of its orders) and its spend in the PRE_PERIOD before (for CUPED); then the
statistics of `report.analyze`, per experiment or per segment.

A unit is the profile an exposure names followed through merges (two units that became
one are one, counted where it was first exposed, and reported as crossed over); a
visitor exposed before they had a profile is found by their anonymous id.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.events import history
from service.events.identity import ANONYMOUS_ID, IdentityKey
from service.experiments import power, repository
from service.experiments.aggregates import VariantTotals, totals_from_units
from service.experiments.declared import HOLDOUT, Declared
from service.experiments.frequentist import conversion_z_test
from service.experiments.report import Report, analyze
from service.language.experiments import Metric
from service.language.facts import stored_filter
from service.language.schema import parse_duration
from service.profiles import repository as profiles

PRE_PERIOD = timedelta(days=30)


@dataclass(frozen=True)
class Unit:
    key: str
    customer_id: uuid.UUID | None
    variant: str
    first_at: datetime
    segments: tuple[str, ...]


@dataclass(frozen=True)
class Outcomes:
    """Unit by unit, in the order of `units`."""

    units: list[Unit]
    converted: np.ndarray
    revenue: np.ndarray
    pre_period: np.ndarray
    guardrails: list[np.ndarray]


def units(session: Session, key: str) -> tuple[list[Unit], int]:
    """Each unit once, in the variant of its first exposure; and how many units were
    exposed to more than one variant (crossed over: a merge, a changed design)."""
    rows = repository.of_experiment(session, key)
    visitors = profiles.owners(
        session, [IdentityKey(ANONYMOUS_ID, r.unit) for r in rows if r.customer_id is None]
    )
    survivors = profiles.survivors(session, [r.customer_id for r in rows if r.customer_id])
    first: dict[str, Unit] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:  # oldest first
        customer = (
            survivors.get(row.customer_id, row.customer_id)
            if row.customer_id
            else visitors.get((ANONYMOUS_ID, row.unit))
        )
        unit_key = str(customer) if customer else f"unit:{row.unit}"
        seen[unit_key].add(row.variant)
        if unit_key not in first:
            first[unit_key] = Unit(
                unit_key, customer, row.variant, row.first_at, tuple(row.segments or ())
            )
    return list(first.values()), sum(1 for names in seen.values() if len(names) > 1)


def outcomes(
    session: Session, found: list[Unit], *, metric: Metric, guardrails: list[Metric]
) -> Outcomes:
    """What each unit did in the metric's window from its first exposure (and each
    guardrail's), and its spend before: units without a profile did nothing."""
    known = [i for i, u in enumerate(found) if u.customer_id is not None]
    customers = [c for c in (found[i].customer_id for i in known) if c is not None]
    starts = [found[i].first_at for i in known]
    window = parse_duration(metric.window)

    def spread(values: Sequence[float | bool], dtype: type) -> np.ndarray:
        out: np.ndarray = np.zeros(len(found), dtype=dtype)
        out[known] = values
        return out

    def did(target: Metric) -> np.ndarray:
        type_, name = stored_filter(target.event)
        span = parse_duration(target.window)
        hits = history.did_within(
            session,
            type_=type_,
            name=name,
            customers=customers,
            since=starts,
            until=[s + span for s in starts],
        )
        return spread(hits, bool)

    revenue = profiles.spend_within(
        session,
        customers=customers,
        since=starts,
        until=[s + window for s in starts],
    )
    pre = profiles.spend_within(
        session,
        customers=customers,
        since=[s - PRE_PERIOD for s in starts],
        until=starts,
        upper_open=True,
    )
    return Outcomes(
        units=found,
        converted=did(metric),
        revenue=spread(revenue, float),
        pre_period=spread(pre, float),
        guardrails=[did(g) for g in guardrails],
    )


def totals(
    data: Outcomes, *, names: Sequence[str], mask: np.ndarray | None = None
) -> list[VariantTotals | int]:
    """Per variant in `names`: its aggregates, or its number of units when under two
    (too few for any statistic)."""
    variant = np.array([u.variant for u in data.units], dtype=object)
    chosen = np.ones(len(data.units), dtype=bool) if mask is None else mask
    result: list[VariantTotals | int] = []
    for name in names:
        picked = chosen & (variant == name)
        if picked.sum() < 2:
            result.append(int(picked.sum()))
            continue
        result.append(
            totals_from_units(
                name=name,
                revenue=data.revenue[picked],
                converted=data.converted[picked],
                pre_period=data.pre_period[picked],
            )
        )
    return result


def read(session: Session, declared: Declared) -> tuple[Outcomes, int]:
    found, crossed = units(session, declared.key)
    spec = declared.spec
    return outcomes(session, found, metric=spec.metric, guardrails=spec.guardrails), crossed


def analysis(
    data: Outcomes, declared: Declared, *, mask: np.ndarray | None = None, alpha: float = 0.05
) -> tuple[list[VariantTotals | int], Report | None]:
    """The variants' aggregates, and the report when every variant has two units."""
    names = list(declared.weights)
    found = totals(data, names=names, mask=mask)
    complete = [t for t in found if isinstance(t, VariantTotals)]
    if len(complete) != len(found):
        return found, None
    return found, analyze(variants=complete, weights=list(declared.weights.values()), alpha=alpha)


def holdout_report(
    data: Outcomes, declared: Declared, *, alpha: float = 0.05
) -> tuple[list[VariantTotals | int], Report] | None:
    """The holdout (as the control) against every exposed unit of the variants pooled:
    what personalizing the target brought at all."""
    if declared.spec.holdout is None:
        return None
    variant = np.array([u.variant for u in data.units], dtype=object)
    held = variant == HOLDOUT
    if held.sum() < 2 or (~held).sum() < 2:
        return None
    # The holdout is drawn before coverage: of all units, `share` are held out and
    # (1 - share) x coverage get a variant.
    share = declared.spec.holdout.share
    treated = (1 - share) * declared.spec.coverage
    groups = [
        totals_from_units(
            name=name,
            revenue=data.revenue[mask],
            converted=data.converted[mask],
            pre_period=data.pre_period[mask],
        )
        for name, mask in ((HOLDOUT, held), ("personalized", ~held))
    ]
    return list(groups), analyze(variants=groups, weights=[share, treated], alpha=alpha)


def guardrail_p_values(data: Outcomes, declared: Declared) -> list[dict[str, Any]]:
    """Per guardrail and treatment: the rates and the two-proportion test's p-value."""
    names = list(declared.weights)
    variant = np.array([u.variant for u in data.units], dtype=object)
    out: list[dict[str, Any]] = []
    for metric, hits in zip(declared.spec.guardrails, data.guardrails, strict=True):
        groups = [_counted(name, hits[variant == name]) for name in names]
        rows = []
        control = groups[0]
        for group in groups[1:]:
            if control is None or group is None:
                continue
            test = conversion_z_test(control=control, treatment=group)
            rows.append(
                {
                    "variant": group.name,
                    "rate": group.conversion_rate,
                    "control_rate": control.conversion_rate,
                    "p_value": _finite(test.p_value),
                }
            )
        out.append({"event": metric.event, "window": metric.window, "treatments": rows})
    return out


def _counted(name: str, hits: np.ndarray) -> VariantTotals | None:
    if len(hits) < 2:
        return None
    return VariantTotals(name=name, units=len(hits), conversions=int(hits.sum()))


def units_needed(
    declared: Declared, control: VariantTotals | int, *, alpha: float = 0.05
) -> int | None:
    """Units per variant to find the declared minimum effect on conversion with 80% power,
    at the control's observed rate (None until it has converted someone)."""
    if not isinstance(control, VariantTotals) or not 0 < control.conversion_rate < 1:
        return None
    return power.conversion_units_per_variant(
        baseline_rate=control.conversion_rate,
        relative_mde=declared.spec.minimum_effect,
        alpha=alpha,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
