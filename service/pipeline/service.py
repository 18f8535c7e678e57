"""Setting items aside and putting them back.

Each stage that sets items aside registers how to put one back in its queue
(`register_replay`); a replay closes the row, and a new failure opens a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.orm import Session

from service.pipeline import repository
from service.pipeline.isolation import OUTAGES
from service.pipeline.models import SetAside, Stage

log = structlog.get_logger(__name__)

ERROR_LIMIT = 1000  # characters of an error message kept

Replay = Callable[[Session, SetAside], None]
_REPLAYS: dict[str, Replay] = {}


def register_replay(stage: Stage, replay: Replay) -> None:
    _REPLAYS[stage] = replay


def set_aside(
    session: Session,
    *,
    stage: Stage,
    error: Exception,
    item_id: int | None = None,
    customer_id: uuid.UUID | None = None,
) -> SetAside:
    """Record that processing this item raised `error`; the caller takes it out of its
    queue in the same transaction."""
    row = repository.add(
        session,
        stage=stage,
        item_id=item_id,
        customer_id=customer_id,
        error_type=type(error).__name__,
        error=str(error)[:ERROR_LIMIT],
    )
    # The message stays in the database (admin API); logs name the type only.
    log.error(
        "item_set_aside",
        set_aside_id=row.id,
        stage=str(stage),
        item_id=item_id,
        error_type=type(error).__name__,
    )
    return row


class NotReplayable(Exception):
    """The row was replayed already, its stage has no replay, or putting it back
    raised again."""


def replay(session: Session, *, row_id: int, now: datetime | None = None) -> SetAside | None:
    """Put a set-aside item back in its stage's queue; None when there is no such row."""
    row = repository.get_for_update(session, row_id)
    if row is None:
        return None
    if row.replayed_at is not None:
        raise NotReplayable(
            f"set-aside item {row_id} was replayed at {row.replayed_at.isoformat()}"
        )
    put_back = _REPLAYS.get(row.stage)
    if put_back is None:
        raise NotReplayable(f"no replay for stage {row.stage!r}")
    try:
        with session.begin_nested():
            put_back(session, row)
    except OUTAGES:
        raise
    except Exception as exc:
        raise NotReplayable(
            f"set-aside item {row_id} still fails ({type(exc).__name__}); it stays open"
        ) from exc
    repository.close(row, at=now or datetime.now(UTC))
    log.info("set_aside_replayed", set_aside_id=row.id, stage=row.stage, item_id=row.item_id)
    return row
