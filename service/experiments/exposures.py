"""Exposures from rules: a customer is exposed to a rule's variant when its action is
sent (dispatch calls `sent`), or, for a variant that sends nothing (a control group, a
holdout), when the rule fires and would have sent it (the rules call `record` with
`arms`). Decisions record theirs through their log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.experiments import repository


def arms(
    stored: Iterable[Mapping[str, Any]], *, customer_id: uuid.UUID, source: str, at: datetime
) -> list[dict[str, Any]]:
    """Exposure rows for a firing's arms (as the firing keeps them: `Arm.as_dict`)."""
    return [
        {
            "experiment": arm["experiment"],
            "variant": arm["variant"],
            "unit": str(customer_id),
            "customer_id": customer_id,
            "segments": arm.get("segments", ()),
            "source": source,
            "at": at,
        }
        for arm in stored
    ]


def record(session: Session, rows: Iterable[Mapping[str, Any]]) -> int:
    return repository.record(session, rows)
