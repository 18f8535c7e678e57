"""Experiments validated through the service's own code path on a synthetic store.

    uv run python -m bench.experiments_store     # BENCH_DATABASE_URL, else TEST_DATABASE_URL's
                                                 # server, else an embedded PostgreSQL
    BENCH_SMOKE=1 uv run python -m bench.experiments_store     # tiny sizes, seconds

A bulk synthetic store (BENCH_CUSTOMERS, 6,000 customers over BENCH_DAYS, 14 days, seed
BENCH_SEED 1) is loaded into a fresh database and analysed. Then BENCH_RUNS (200)
experiments of each kind go through `bench/store_validation.py`: a rule file's text read
by the loader and declared, every customer with a profile bucketed by `Declared.arm` and
exposed at their first event (`repository.record`), the results read from the database
(`results.read`, `results.analysis`), in a savepoint rolled back after each. Each
experiment has its own key, so it splits the same customers anew. The metric: an
`Order Completed` within 7 days of the first exposure (the store's end cuts the windows
of its last week).

- A/A: the share of experiments whose fixed-horizon z-test on conversion rejects at
  alpha 0.05 (target within [0.03, 0.07]); Welch's test on revenue per unit; under
  daily peeking (a look at the end of each day, on the units exposed by then with their
  whole windows), the always-valid mSPRT p-value (target <= 0.05) and, for contrast, the
  fixed-horizon z-test read every day; the sample-ratio check's false flags.
- A planted +10% relative lift: each treatment unit gets one more order (its `Order
  Completed` event and `orders` row, at a uniform time in its window) with probability
  0.1 p / (1 - p), p the baseline rate of the A/A experiments, which raises the
  expected conversion rate by 10%. The coverage gives each variant the units the
  sample-size calculator asks for 80% power at p. Target: the share rejected within
  ±0.10 of `power.power_at` for the units each variant got.
- A planted sample-ratio mismatch: each treatment exposure is lost with probability
  BENCH_DROP (0.15). Target: flagged (p < 0.001) in >= 95% of experiments; beside it,
  what the noncentral chi-square predicts for those units.
- Speed: seconds per experiment in each step, beside one plain SQL query counting the
  same conversions per variant from the same exposures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bench import store_validation as sv
from service import db
from service.language.schema import parse_duration
from service.synthetic import bulk

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "600" if SMOKE else "6000"))
DAYS = int(os.environ.get("BENCH_DAYS", "7" if SMOKE else "14"))
RUNS = int(os.environ.get("BENCH_RUNS", "10" if SMOKE else "200"))
SEED = int(os.environ.get("BENCH_SEED", "1"))
DROP = float(os.environ.get("BENCH_DROP", "0.15"))
END = datetime(2030, 3, 1, tzinfo=UTC)  # a fixed store: the same rows in every run
KEYS = {
    "IDENTITY_HASH_KEY": "bench",
    "PII_ENCRYPTION_KEYS": "rQ5G9zP4m1YyZ7f3c2kq0bq6rX9d8JzF0pTj1uVwXy4=",
}


def main() -> None:
    for name, value in KEYS.items():
        os.environ.setdefault(name, value)  # the generator workers hash and encrypt too
    from bench.ingest import fresh_database  # after the keys: it reads the settings

    plan = bulk.Plan(seed=SEED, customers=CUSTOMERS, start=END - timedelta(days=DAYS), end=END)
    with fresh_database("experiments_store") as url:
        db.upgrade(url)
        began = time.perf_counter()
        loaded = bulk.load(url, plan, workers=0 if SMOKE else None)
        print(
            f"store: {CUSTOMERS:,} customers over {DAYS} days (seed {SEED}),"
            f" {loaded.rows['events']:,} events, {loaded.rows['orders']:,} orders,"
            f" loaded in {time.perf_counter() - began:.1f} s"
        )
        engine = create_engine(url)
        try:
            with Session(engine) as session:
                sv.analyze(session)
                measure(session, sv.read_store(session, start=plan.start, end=plan.end))
        finally:
            engine.dispose()


def line(label: str, flags: Sequence[bool], target: str) -> None:
    value, low, high = sv.share(flags)
    print(f"{label:<60}{value:>8.4f}  [{low:.4f}, {high:.4f}]  {target}")


def runs(
    session: Session, store: sv.Store, prefix: str, clock: sv.Clock, **kw: Any
) -> list[sv.Outcome]:
    began = time.perf_counter()
    found = [
        sv.experiment(session, store, key=f"{prefix}_{i:04d}", seed=SEED, clock=clock, **kw)
        for i in range(RUNS)
    ]
    units = np.mean([sum(o.units) for o in found])
    seconds = time.perf_counter() - began
    print(f"\n{prefix}: {RUNS} experiments of {units:,.0f} units on average, {seconds:.1f} s")
    return found


def measure(session: Session, store: sv.Store) -> None:
    clock = sv.Clock()
    units = len(store.customers)
    aa = runs(session, store, "aa", clock)
    baseline = sum(aa[0].conversions) / sum(aa[0].units)
    print(
        f"{units:,} units (customers with a profile); Order Completed within {sv.WINDOW} of"
        f" the first event; baseline rate {baseline:.4f}; alpha {sv.ALPHA}"
    )
    print(f"{'figure':<60}{'share':>8}  {'95% interval':<18}  target")
    alpha, days = sv.ALPHA, store.days
    line(
        "A/A conversion, z-test at the horizon",
        [o.conversion_p < alpha for o in aa],
        "in [0.03, 0.07]",
    )
    line(
        "A/A revenue per unit, Welch at the horizon",
        [o.revenue_p < alpha for o in aa],
        "(reported)",
    )
    line(
        f"A/A, {days} daily looks, mSPRT always-valid p-value",
        [o.sequential_p < alpha for o in aa],
        "<= 0.05",
    )
    line(
        f"A/A, {days} daily looks, fixed-horizon z-test each day",
        [o.peeking_p < alpha for o in aa],
        "(inflated)",
    )
    line("A/A sample-ratio false flags (p < 0.001)", [o.srm_flagged for o in aa], "about 0.001")
    uniform = stats.kstest([o.conversion_p for o in aa], "uniform").pvalue
    print(f"A/A conversion p-values against uniform: Kolmogorov-Smirnov p = {uniform:.3f}")

    coverage = sv.lift_coverage(baseline, units)
    probability = sv.lift_probability(baseline)
    lifted = runs(session, store, "lift", clock, coverage=coverage, plant_probability=probability)
    per_variant = float(np.mean([o.units for o in lifted]))
    predicted = sv.predicted_power(baseline, per_variant)
    planted = np.mean([o.planted for o in lifted])
    print(
        f"planted +{sv.LIFT:.0%}: one more order with probability {probability:.4f}"
        f" ({planted:.0f} a run); coverage {coverage:.3f}: {per_variant:,.0f} units a variant"
    )
    line(
        "+10% lift found, z-test at the horizon",
        [o.conversion_p < alpha for o in lifted],
        f"{predicted:.3f} ± 0.10 (power_at)",
    )
    line(
        f"+10% lift found, mSPRT after {days} daily looks",
        [o.sequential_p < alpha for o in lifted],
        "(reported)",
    )
    line("+10% lift, revenue per unit, Welch", [o.revenue_p < alpha for o in lifted], "(reported)")
    observed = np.mean([o.relative_lift for o in lifted])
    print(f"mean observed relative lift of conversion {observed:+.4f}")

    dropped = runs(session, store, "srm", clock, drop=DROP)
    expected = sv.predicted_srm_flags(units, drop=DROP)
    line(
        f"SRM: {DROP:.0%} of treatment exposures lost, flagged",
        [o.srm_flagged for o in dropped],
        f">= 0.95 (predicted {expected:.3f})",
    )

    total = len(aa) + len(lifted) + len(dropped)
    print(f"\nseconds per experiment, over {total} experiments:")
    for name, seconds in clock.seconds.items():
        print(f"  {name:<28}{seconds / total:>8.3f}")
    print(f"  {'all':<28}{sum(clock.seconds.values()) / total:>8.3f}")
    print(
        f"  {'baseline: one plain query':<28}{baseline_query(session, store):>8.3f}"
        "  (units and conversions per variant of one A/A experiment)"
    )


def baseline_query(session: Session, store: sv.Store) -> float:
    """One plain SQL query over the same exposures: units and conversions per variant."""
    savepoint = session.begin_nested()
    try:
        item = sv.declared("baseline_query")
        sv.expose(session, item, store, drop=0.0, rng=np.random.default_rng(0))
        began = time.perf_counter()
        session.execute(
            text(
                "SELECT x.variant, count(*), count(*) FILTER (WHERE EXISTS (SELECT 1"
                " FROM events e WHERE e.customer_id = x.customer_id AND e.type = 'track'"
                " AND e.name = 'Order Completed' AND e.occurred_at >= x.first_at"
                " AND e.occurred_at <= x.first_at + :window))"
                " FROM experiment_exposures x WHERE x.experiment = :key GROUP BY x.variant"
            ),
            {"key": item.key, "window": parse_duration(sv.WINDOW)},
        ).all()
        return time.perf_counter() - began
    finally:
        savepoint.rollback()


if __name__ == "__main__":
    main()
