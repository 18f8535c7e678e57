"""Exposures written (from the decision log, dispatch and the rules) and read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from service.experiments.models import ExperimentExposure


def record(session: Session, exposures: Iterable[Mapping[str, Any]]) -> int:
    """Add exposures (experiment, variant, unit, customer_id, segments, source, at): a
    unit's first time in a variant makes its row, later ones move `last_at` and count.
    Returns how many rows were written."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in exposures:
        key = (item["experiment"], item["unit"], item["variant"])
        found = merged.get(key)
        if found is None:
            merged[key] = {
                "experiment": item["experiment"],
                "variant": item["variant"],
                "unit": item["unit"],
                "customer_id": item.get("customer_id"),
                "segments": list(item.get("segments", ())),
                "source": item["source"],
                "first_at": item["at"],
                "last_at": item["at"],
                "exposures": 1,
            }
        else:  # one INSERT cannot touch a row twice: the batch is folded first
            found["first_at"] = min(found["first_at"], item["at"])
            found["last_at"] = max(found["last_at"], item["at"])
            found["exposures"] += 1
            found["customer_id"] = found["customer_id"] or item.get("customer_id")
    if not merged:
        return 0
    statement = insert(ExperimentExposure).values(
        sorted(merged.values(), key=lambda r: (r["experiment"], r["unit"], r["variant"]))
    )
    kept = ExperimentExposure.__table__.c
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["experiment", "unit", "variant"],
            set_={
                "first_at": func.least(kept.first_at, statement.excluded.first_at),
                "last_at": func.greatest(kept.last_at, statement.excluded.last_at),
                "exposures": kept.exposures + statement.excluded.exposures,
                "customer_id": func.coalesce(kept.customer_id, statement.excluded.customer_id),
            },
        )
    )
    return len(merged)


def of_experiment(session: Session, experiment: str) -> Sequence[ExperimentExposure]:
    return session.scalars(
        select(ExperimentExposure)
        .where(ExperimentExposure.experiment == experiment)
        .order_by(ExperimentExposure.first_at, ExperimentExposure.id)
    ).all()


def exposed_experiments(session: Session) -> dict[str, tuple[int, datetime, datetime]]:
    """Every experiment with exposures: (units, first, last); a unit seen in two
    variants counts once."""
    rows = session.execute(
        select(
            ExperimentExposure.experiment,
            func.count(ExperimentExposure.unit.distinct()),
            func.min(ExperimentExposure.first_at),
            func.max(ExperimentExposure.last_at),
        ).group_by(ExperimentExposure.experiment)
    )
    return {name: (count, first, last) for name, count, first, last in rows}


def customers_of(session: Session, experiment: str) -> set[uuid.UUID]:
    return set(
        session.scalars(
            select(ExperimentExposure.customer_id).where(
                ExperimentExposure.experiment == experiment,
                ExperimentExposure.customer_id.is_not(None),
            )
        )
    )
