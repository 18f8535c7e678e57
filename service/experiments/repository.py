"""Exposures written (from the decision log, dispatch and the rules) and read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from service.db import json_document
from service.experiments.models import ExperimentExposure

_RECORD = text(
    "INSERT INTO experiment_exposures AS kept (experiment, variant, unit, customer_id,"
    " segments, source, first_at, last_at, exposures)"
    " SELECT experiment, variant, unit, customer_id, segments, source, first_at, last_at,"
    " exposures FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(experiment text,"
    " variant text, unit text, customer_id uuid, segments text[], source text,"
    " first_at timestamptz, last_at timestamptz, exposures integer)"
    " ON CONFLICT (experiment, unit, variant) DO UPDATE SET"
    " first_at = least(kept.first_at, excluded.first_at),"
    " last_at = greatest(kept.last_at, excluded.last_at),"
    " exposures = kept.exposures + excluded.exposures,"
    " customer_id = coalesce(kept.customer_id, excluded.customer_id)"
)


def record(session: Session, exposures: Iterable[Mapping[str, Any]]) -> int:
    """Add exposures (experiment, variant, unit, customer_id, segments, source, at): a
    unit's first time in a variant makes its row, later ones move `last_at` and count.
    Returns how many rows were written.

    One statement whatever the batch, its rows one JSON parameter: bound one value a
    parameter, a batch past PostgreSQL's 65,535 parameters (7,281 exposures) failed,
    and compiling a statement of tens of thousands of parameters took seconds."""
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
    # In key order, so that two batches lock the rows they share in the same order.
    rows = [merged[key] for key in sorted(merged)]
    session.execute(_RECORD, {"rows": json_document(rows)})
    return len(merged)


class Exposed(NamedTuple):
    unit: str
    customer_id: uuid.UUID | None
    variant: str
    first_at: datetime
    segments: list[str] | None


def of_experiment(session: Session, experiment: str) -> list[Exposed]:
    """The experiment's exposure rows, oldest first: plain rows, not mapped objects (an
    experiment has tens of thousands, which the session need not track)."""
    e = ExperimentExposure
    rows = session.execute(
        select(e.unit, e.customer_id, e.variant, e.first_at, e.segments)
        .where(e.experiment == experiment)
        .order_by(e.first_at, e.id)
    )
    return [Exposed(*row) for row in rows]


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
