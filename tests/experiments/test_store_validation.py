"""Experiments through the service's own code path on a small synthetic store (the
harness of `bench/store_validation.py`; `bench/experiments_store.py` runs it at full
size): a rule file's text read by the loader and declared, every customer bucketed by
`Declared.arm`, exposures recorded, results read from the database and analysed. A/A
experiments reject at about alpha and the always-valid test holds under daily peeking;
a planted lift in the data is found, about as often as the calculator predicts; lost
treatment exposures are flagged as a sample-ratio mismatch. Each figure is also checked
against statsmodels and scipy on numbers counted by plain SQL from the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from statsmodels.stats.proportion import proportions_ztest

from bench import store_validation as sv
from service.experiments.declared import Declared
from service.synthetic import bulk

CUSTOMERS, DAYS = 1500, 10
END = datetime(2030, 3, 1, tzinfo=UTC)
AA_RUNS, LIFT_RUNS, SRM_RUNS = 50, 25, 10
DROP = 0.35  # of treatment exposures: the store's 1,318 units then give p < 0.001 nearly always


@dataclass
class Loaded:
    session: Session
    store: sv.Store


@pytest.fixture(scope="module")
def loaded(make_database) -> Iterator[Loaded]:
    url = make_database("store_validation")
    plan = bulk.Plan(seed=3, customers=CUSTOMERS, start=END - timedelta(days=DAYS), end=END)
    bulk.load(url, plan, workers=0)
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            sv.analyze(session)
            yield Loaded(session, sv.read_store(session, start=plan.start, end=plan.end))
            session.rollback()
    finally:
        engine.dispose()


# Counted without the service: each exposure's conversion and revenue in its window.
BY_SQL = """
SELECT x.variant,
       EXISTS (SELECT 1 FROM events e WHERE e.customer_id = x.customer_id
               AND e.type = 'track' AND e.name = 'Order Completed'
               AND e.occurred_at BETWEEN x.first_at AND x.first_at + interval '7 days'),
       coalesce((SELECT sum(coalesce(o.total, 0) - o.refunded - o.refunded_cumulative)
                 FROM orders o WHERE o.customer_id = x.customer_id
                 AND o.placed_at BETWEEN x.first_at AND x.first_at + interval '7 days'), 0)
FROM experiment_exposures x WHERE x.experiment = :key
"""


@dataclass
class Counted:
    units: list[int]
    conversions: list[int]
    revenue: list[np.ndarray]


def count(session: Session, item: Declared, into: list[Counted]) -> None:
    rows = session.execute(text(BY_SQL), {"key": item.key}).all()
    names = [sv.CONTROL, sv.TREATMENT]
    into.append(
        Counted(
            units=[sum(r[0] == n for r in rows) for n in names],
            conversions=[sum(r[0] == n and r[1] for r in rows) for n in names],
            revenue=[np.array([float(r[2]) for r in rows if r[0] == n]) for n in names],
        )
    )


def check_against_scipy(outcome: sv.Outcome, counted: Counted) -> None:
    """The service's figures are statsmodels' and scipy's on the SQL counts."""
    assert list(outcome.units) == counted.units
    assert list(outcome.conversions) == counted.conversions
    _, z_p = proportions_ztest(counted.conversions[::-1], counted.units[::-1])
    assert outcome.conversion_p == pytest.approx(z_p, rel=1e-9)
    welch = stats.ttest_ind(counted.revenue[1], counted.revenue[0], equal_var=False)
    assert outcome.revenue_p == pytest.approx(welch.pvalue, rel=1e-6)
    assert outcome.srm_p == pytest.approx(stats.chisquare(counted.units).pvalue, rel=1e-9)


def at_most(runs: int, rate: float) -> int:
    """The most rejections a test at `rate` gives in `runs` but one time in a thousand."""
    return int(stats.binom.ppf(0.999, runs, rate))


def test_aa_experiments_reject_at_alpha_and_the_sequential_test_holds_under_peeking(
    loaded: Loaded,
) -> None:
    counted: list[Counted] = []
    aa = [
        sv.experiment(
            loaded.session,
            loaded.store,
            key=f"aa_{i:03d}",
            seed=1,
            inspect=(lambda s, item: count(s, item, counted)) if i < 2 else None,
        )
        for i in range(AA_RUNS)
    ]
    for outcome, numbers in zip(aa, counted, strict=False):
        check_against_scipy(outcome, numbers)
    # Every unit each time, split anew by each key.
    assert {sum(o.units) for o in aa} == {len(loaded.store.customers)}
    assert len({o.units for o in aa}) > AA_RUNS / 2
    fixed = sum(o.conversion_p < sv.ALPHA for o in aa)
    assert fixed <= at_most(AA_RUNS, sv.ALPHA)
    assert stats.kstest([o.conversion_p for o in aa], "uniform").pvalue > 0.001
    assert sum(o.revenue_p < sv.ALPHA for o in aa) <= at_most(AA_RUNS, sv.ALPHA)
    # Daily looks: the always-valid p-value stays within alpha, the fixed-horizon test
    # read every day does not.
    sequential = sum(o.sequential_p < sv.ALPHA for o in aa)
    peeking = sum(o.peeking_p < sv.ALPHA for o in aa)
    assert sequential <= at_most(AA_RUNS, sv.ALPHA)
    assert peeking > fixed  # the last look is the horizon: peeking rejects at least as often
    assert not any(o.srm_flagged for o in aa)


def test_a_planted_lift_is_found_about_as_often_as_the_calculator_predicts(
    loaded: Loaded,
) -> None:
    session, store = loaded.session, loaded.store
    base = sv.experiment(session, store, key="baseline", seed=1)
    baseline = sum(base.conversions) / sum(base.units)
    probability = sv.lift_probability(baseline)
    counted: list[Counted] = []
    lifted = [
        sv.experiment(
            session,
            store,
            key=f"lift_{i:03d}",
            seed=1,
            plant_probability=probability,
            inspect=(lambda s, item: count(s, item, counted)) if i == 0 else None,
        )
        for i in range(LIFT_RUNS)
    ]
    check_against_scipy(lifted[0], counted[0])
    assert all(o.planted > 0 for o in lifted)
    # Nothing planted stays: each experiment is rolled back to the store as loaded.
    planted = "SELECT count(*) FROM orders WHERE order_id LIKE 'plant-%'"
    assert session.execute(text(planted)).scalar_one() == 0
    # The lift planted is the lift read: +10% relative on average.
    assert np.mean([o.relative_lift for o in lifted]) == pytest.approx(sv.LIFT, abs=0.05)
    per_variant = float(np.mean([o.units for o in lifted]))
    predicted = sv.predicted_power(baseline, per_variant)
    found = np.mean([o.conversion_p < sv.ALPHA for o in lifted])
    assert abs(found - predicted) <= 3 * np.sqrt(predicted * (1 - predicted) / LIFT_RUNS)
    assert np.mean([o.revenue[1] > o.revenue[0] for o in lifted]) > 0.5


def test_lost_treatment_exposures_are_flagged_as_a_sample_ratio_mismatch(
    loaded: Loaded,
) -> None:
    units = len(loaded.store.customers)
    assert sv.predicted_srm_flags(units, drop=DROP) > 0.999
    dropped = [
        sv.experiment(loaded.session, loaded.store, key=f"srm_{i:03d}", seed=1, drop=DROP)
        for i in range(SRM_RUNS)
    ]
    for o in dropped:
        assert o.units[1] < o.units[0]
        assert o.srm_p == pytest.approx(stats.chisquare(o.units).pvalue, rel=1e-9)
    assert all(o.srm_flagged for o in dropped)
