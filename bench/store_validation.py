"""The harness that validates experiments through the service's own code path on a
synthetic store (`bench/experiments_store.py` at full size, the tests small).

One simulated experiment (`experiment`) is the text of a rule file, read by the loader
(`load_source`) and declared (`declare`); every unit of the store (a customer with a
profile) is bucketed by `Declared.arm` and exposed at its first event
(`repository.record`); a planted lift adds orders to treatment units and a planted
sample-ratio mismatch loses treatment exposures; the results are read from the database
(`results.read`) and analysed (`results.analysis`), at the end and at a look after each
day of the store. It all runs in a savepoint rolled back after it, so experiments are
independent and the store stays as loaded. Conversion is the metric's event (an `Order
Completed`) within its window of the first exposure; revenue the total of the orders in
it.

The harness's own SQL (the store's units, the planted rows, ANALYZE) is here: it is no
part of the service.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import text
from sqlalchemy.orm import Session
from statsmodels.stats.proportion import proportion_confint

from service.db import json_document
from service.experiments import repository, results
from service.experiments.aggregates import VariantTotals
from service.experiments.checks import SRM_THRESHOLD
from service.experiments.declared import Declared, declare
from service.experiments.power import (
    conversion_effect_size,
    conversion_units_per_variant,
    power_at,
)
from service.experiments.sequential import running_minimum
from service.language.loader import load_source
from service.language.schema import parse_duration

WINDOW = "7d"
LIFT = 0.1
ALPHA = 0.05
CONTROL, TREATMENT = "control", "treatment"

RULE_FILE = """\
ruleset: store_validation
version: 1
description: One experiment of the validation on a synthetic store.
rules:
  - id: welcome
    trigger:
      event: Order Completed
    actions:
      - offer:
          channel: email
          offer: WELCOME10
          template: welcome
experiments:
  - key: {key}
    target: {{rule: welcome}}
    coverage: {coverage}
    variants:
      - {{name: control}}
      - {{name: treatment{changes}}}
    metric: {{event: Order Completed, window: {window}}}
"""


def declared(key: str, *, window: str = WINDOW, coverage: float = 1.0, offer: str = "") -> Declared:
    """The experiment of a rule file's text, as the loader reads it and decisions declare
    it. `offer`: the treatment's offer (nothing changes without one: an A/A test)."""
    source = RULE_FILE.format(
        key=key,
        coverage=f"{coverage:.6f}",
        window=window,
        changes=f", offer: {offer}" if offer else "",
    )
    loaded = load_source(f"{key}.yaml", source)
    return declare(loaded.definition.experiments[0], ruleset=loaded.name)


@dataclass(frozen=True)
class Store:
    """What the experiments reach: every customer with a profile, exposed at their first
    event; and what a planted order costs (the store's own order totals)."""

    customers: list[uuid.UUID]
    first_at: list[datetime]
    start: datetime
    end: datetime
    order_totals: np.ndarray
    currency: str

    @property
    def days(self) -> int:
        return math.ceil((self.end - self.start) / timedelta(days=1))


def analyze(session: Session) -> None:
    """Statistics for the tables a read joins, as autovacuum gathers them soon after a
    load (this machine's server runs without it). Without them the planner takes the
    store's `Order Completed` events for a handful and checks each unit's window against
    all of them: 38 million comparisons, 9 s, for 4,300 units of a 12,000-customer store,
    against 0.2 s once analysed."""
    session.execute(text("ANALYZE customers, events, orders, experiment_exposures"))


def read_store(session: Session, *, start: datetime, end: datetime) -> Store:
    """The store's units (each customer with a profile, at their first event), and its
    completed orders' totals and most common currency for the planted orders."""
    rows = session.execute(
        text(
            "SELECT customer_id, min(occurred_at) FROM events WHERE customer_id IS NOT NULL"
            " GROUP BY customer_id ORDER BY customer_id"
        )
    ).all()
    totals = session.scalars(
        text(
            "SELECT total FROM orders WHERE status = 'completed' AND total IS NOT NULL"
            " ORDER BY source, order_id"
        )
    ).all()
    currency = session.scalar(
        text("SELECT currency FROM orders GROUP BY currency ORDER BY count(*) DESC LIMIT 1")
    )
    return Store(
        customers=[r[0] for r in rows],
        first_at=[r[1] for r in rows],
        start=start,
        end=end,
        order_totals=np.array([float(t) for t in totals]),
        currency=currency or "USD",
    )


@dataclass
class Clock:
    """Seconds spent in each step, over every experiment."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - began


def expose(
    session: Session, item: Declared, store: Store, *, drop: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Bucket every unit and record its exposure at its first event; a treatment
    exposure is lost with probability `drop` (a planted sample-ratio mismatch)."""
    lost = rng.random(len(store.customers)) < drop
    rows = []
    for customer, at, gone in zip(store.customers, store.first_at, lost, strict=True):
        arm = item.arm(str(customer), segments=(), now=at)
        if arm is None or (gone and arm.variant == TREATMENT):
            continue
        rows.append(
            {
                "experiment": item.key,
                "variant": arm.variant,
                "unit": str(customer),
                "customer_id": customer,
                "segments": arm.segments,
                "source": "decision",
                "at": at,
            }
        )
    repository.record(session, rows)
    return rows


_PLANT_EVENTS = text(
    "INSERT INTO events (source, message_id, customer_id, type, name, occurred_at,"
    " properties, context, evaluated_at)"
    " SELECT 'synthetic', r.order_id, r.customer_id, 'track', 'Order Completed', r.at,"
    " jsonb_build_object('order_id', r.order_id, 'total', r.total, 'currency', r.currency),"
    " '{}', now()"
    " FROM jsonb_to_recordset(CAST(:rows AS jsonb))"
    " AS r(order_id text, customer_id uuid, at timestamptz, total numeric, currency text)"
)
_PLANT_ORDERS = text(
    "INSERT INTO orders (source, order_id, customer_id, status, currency, total, refunded,"
    " refunded_cumulative, placed_at, status_at)"
    " SELECT 'synthetic', r.order_id, r.customer_id, 'completed', r.currency, r.total, 0, 0,"
    " r.at, r.at FROM jsonb_to_recordset(CAST(:rows AS jsonb))"
    " AS r(order_id text, customer_id uuid, at timestamptz, total numeric, currency text)"
)


def plant(
    session: Session,
    exposed: Sequence[dict[str, Any]],
    store: Store,
    *,
    probability: float,
    window: timedelta,
    rng: np.random.Generator,
) -> int:
    """One more order for each treatment unit with `probability`: its `Order Completed`
    event and its `orders` row, as bulk mode writes them, at a uniform time within the
    unit's metric window (cut at the store's end). Returns how many were planted."""
    treated = [r for r in exposed if r["variant"] == TREATMENT]
    chosen = [r for r, u in zip(treated, rng.random(len(treated)), strict=True) if u < probability]
    if not chosen:
        return 0
    fractions = rng.random(len(chosen))
    totals = rng.choice(store.order_totals, size=len(chosen))
    rows = [
        {
            "order_id": f"plant-{r['experiment']}-{i}",
            "customer_id": r["customer_id"],
            "at": r["at"] + fraction * min(window, store.end - r["at"]),
            "total": round(float(total), 2),
            "currency": store.currency,
        }
        for i, (r, fraction, total) in enumerate(zip(chosen, fractions, totals, strict=True))
    ]
    document = json_document(rows)
    session.execute(_PLANT_EVENTS, {"rows": document})
    session.execute(_PLANT_ORDERS, {"rows": document})
    return len(rows)


@dataclass(frozen=True)
class Outcome:
    """One experiment as the service reads it."""

    units: tuple[int, int]  # control, treatment
    conversions: tuple[int, int]
    revenue: tuple[float, float]  # revenue per unit
    conversion_p: float  # the fixed-horizon z-test at the end
    revenue_p: float  # Welch's test on revenue per unit at the end
    srm_p: float
    srm_flagged: bool
    sequential_p: float  # the always-valid p-value after the last daily look
    peeking_p: float  # the lowest fixed-horizon p-value over the daily looks
    planted: int

    @property
    def rates(self) -> tuple[float, float]:
        return self.conversions[0] / self.units[0], self.conversions[1] / self.units[1]

    @property
    def relative_lift(self) -> float:
        control, treatment = self.rates
        return treatment / control - 1


def experiment(
    session: Session,
    store: Store,
    *,
    key: str,
    seed: int,
    window: str = WINDOW,
    coverage: float = 1.0,
    plant_probability: float = 0.0,
    drop: float = 0.0,
    clock: Clock | None = None,
    inspect: Callable[[Session, Declared], None] | None = None,
) -> Outcome:
    """Declare, expose, plant, read and analyse one experiment; leave nothing behind.
    `inspect` is called with the experiment's rows still there, before they go."""
    clock = clock or Clock()
    rng = np.random.default_rng([seed, *key.encode()])
    with clock.step("declare"):
        item = declared(key, window=window, coverage=coverage, offer="WELCOME15")
    savepoint = session.begin_nested()
    try:
        with clock.step("bucket and record"):
            exposed = expose(session, item, store, drop=drop, rng=rng)
        planted = 0
        if plant_probability:
            with clock.step("plant"):
                planted = plant(
                    session,
                    exposed,
                    store,
                    probability=plant_probability,
                    window=parse_duration(window),
                    rng=rng,
                )
        with clock.step("read"):
            data, _ = results.read(session, item)
        with clock.step("analyse"):
            outcome = _outcome(data, item, store, planted=planted)
        if inspect is not None:
            inspect(session, item)
        return outcome
    finally:
        savepoint.rollback()


def _outcome(data: results.Outcomes, item: Declared, store: Store, *, planted: int) -> Outcome:
    found, report = results.analysis(data, item, alpha=ALPHA)
    if report is None:
        raise RuntimeError(f"{item.key}: a variant has fewer than two units")
    first = np.array([u.first_at for u in data.units], dtype=object)
    sequential, peeking = [], []
    for day in range(1, store.days + 1):
        mask = first < store.start + timedelta(days=day)
        _, look = results.analysis(data, item, mask=mask, alpha=ALPHA)
        if look is not None:
            sequential.append(look.treatments[0].conversion.sequential.p_value)
            peeking.append(look.treatments[0].conversion.comparison.test.p_value)
    treatment = report.treatments[0]
    control_totals, treatment_totals = found
    assert isinstance(control_totals, VariantTotals)
    assert isinstance(treatment_totals, VariantTotals)
    return Outcome(
        units=(control_totals.units, treatment_totals.units),
        conversions=(control_totals.conversions, treatment_totals.conversions),
        revenue=(control_totals.revenue().mean, treatment_totals.revenue().mean),
        conversion_p=treatment.conversion.comparison.test.p_value,
        revenue_p=treatment.revenue.comparison.test.p_value,
        srm_p=report.sample_ratio.p_value,
        srm_flagged=report.sample_ratio.mismatch,
        sequential_p=running_minimum(sequential)[-1] if sequential else 1.0,
        peeking_p=min(peeking, default=1.0),
        planted=planted,
    )


# --- what the figures are compared with --------------------------------------------------


def lift_probability(baseline: float, *, lift: float = LIFT) -> float:
    """The chance of one more order for a treatment unit that raises the expected
    conversion rate from `baseline` to baseline x (1 + lift): only a unit that had not
    converted can convert, so baseline + (1 - baseline) q = baseline (1 + lift)."""
    return lift * baseline / (1 - baseline)


def lift_coverage(baseline: float, units: int, *, lift: float = LIFT) -> float:
    """The coverage at which each of two even variants gets the units the calculator
    asks for 80% power (all units when the store has fewer)."""
    needed = conversion_units_per_variant(baseline_rate=baseline, relative_mde=lift, power=0.8)
    return min(1.0, 2 * needed / units)


def predicted_power(baseline: float, units_per_variant: float, *, lift: float = LIFT) -> float:
    d = conversion_effect_size(baseline_rate=baseline, relative_mde=lift)
    return power_at(effect_size=d, units=round(units_per_variant), alpha=ALPHA)


def predicted_srm_flags(units: int, *, drop: float) -> float:
    """The share of runs the sample-ratio check flags when a treatment exposure is lost
    with probability `drop`, an even split expected: the noncentral chi-square (1 degree
    of freedom) at the expected counts, past the threshold's critical value."""
    control, treatment = units / 2, units / 2 * (1 - drop)
    expected = (control + treatment) / 2
    noncentrality = ((control - expected) ** 2 + (treatment - expected) ** 2) / expected
    critical = stats.chi2.isf(SRM_THRESHOLD, 1)
    return float(stats.ncx2.sf(critical, 1, noncentrality))


def share(flags: Sequence[bool]) -> tuple[float, float, float]:
    """The share of True, with its 95% Wilson interval."""
    hits, n = int(sum(flags)), len(flags)
    low, high = proportion_confint(hits, n, method="wilson")
    return hits / n, float(low), float(high)
