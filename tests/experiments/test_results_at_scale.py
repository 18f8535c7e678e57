"""Exposures and results at the size of a real experiment: tens of thousands of units in
one batch and one read (PostgreSQL binds at most 65,535 parameters a statement), and
Holm's correction as statsmodels computes it without its garbage collection."""

from __future__ import annotations

import gc
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session
from statsmodels.stats.multitest import multipletests

from service.experiments import repository, results
from service.experiments.checks import holm
from service.profiles import repository as profiles
from service.profiles.models import Customer

START = datetime(2030, 2, 1, tzinfo=UTC)


def test_one_batch_records_ten_thousand_exposures_and_folds_repeats(session: Session) -> None:
    units = [f"visitor-{i}" for i in range(10_000)]  # 90,000 values: past the parameter limit
    batch = [
        {
            "experiment": "hero",
            "variant": "b" if i % 2 else "a",
            "unit": unit,
            "source": "decision",
            "segments": ["vip"] if i % 3 == 0 else [],
            "at": START + timedelta(seconds=i),
        }
        for i, unit in enumerate(units)
    ]
    assert repository.record(session, batch) == 10_000
    # Seen again, earlier for some: one row each, its first time the earliest.
    again = [{**row, "at": row["at"] - timedelta(days=1)} for row in batch[:5]]
    assert repository.record(session, again + batch[5:10]) == 10
    rows = repository.of_experiment(session, "hero")
    assert len(rows) == 10_000
    assert [r.unit for r in rows[:5]] == units[:5]  # oldest first
    assert rows[0].first_at == START - timedelta(days=1)
    assert rows[0].segments == ["vip"]
    assert rows[1].segments == []
    found, crossed = results.units(session, "hero")
    assert (len(found), crossed) == (10_000, 0)
    assert sum(u.variant == "b" for u in found) == 5_000


def test_survivors_of_seventy_thousand_profiles_in_one_statement(session: Session) -> None:
    kept, merged = Customer(id=uuid.uuid4()), Customer(id=uuid.uuid4())
    session.add(kept)
    session.flush()
    merged.merged_into_id = kept.id
    session.add(merged)
    session.flush()
    unknown = [uuid.uuid4() for _ in range(70_000)]
    found = profiles.survivors(session, [*unknown, kept.id, merged.id, merged.id])
    assert found == {kept.id: kept.id, merged.id: kept.id}
    assert profiles.survivors(session, []) == {}


@pytest.mark.parametrize("m", [1, 2, 3, 7, 20])
def test_holm_gives_statsmodels_numbers(m: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc, "collect", lambda *args: 0)  # statsmodels' own, seconds here
    rng = np.random.default_rng(m)
    for _ in range(50):
        raw = rng.beta(0.5, 3.0, m)
        raw[rng.random(m) < 0.2] = raw[0]  # ties
        reject, adjusted, _, _ = multipletests(raw, alpha=0.05, method="holm")
        corrected = holm(list(raw), alpha=0.05)
        assert corrected.p_values == pytest.approx(list(adjusted), rel=1e-12)
        assert corrected.rejected == [bool(r) for r in reject]


def test_holm_leaves_the_garbage_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # A full collection costs in proportion to everything the process holds: in an API
    # worker or a read of many units, a tenth of a second for each metric of each read.
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(1) or 0)
    holm([0.01, 0.04, 0.03])
    assert collections == []
