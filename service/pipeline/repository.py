"""SQL for set-aside items."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.pipeline.models import SetAside


def add(
    session: Session,
    *,
    stage: str,
    item_id: int | None,
    customer_id: uuid.UUID | None,
    error_type: str,
    error: str,
) -> SetAside:
    row = SetAside(
        stage=stage, item_id=item_id, customer_id=customer_id, error_type=error_type, error=error
    )
    session.add(row)
    session.flush()
    return row


def get_for_update(session: Session, row_id: int) -> SetAside | None:
    return session.get(SetAside, row_id, with_for_update=True)


def listing(
    session: Session, *, stage: str | None, open_only: bool, after: int | None, limit: int
) -> Sequence[SetAside]:
    query = select(SetAside).order_by(SetAside.id).limit(limit)
    if stage is not None:
        query = query.where(SetAside.stage == stage)
    if open_only:
        query = query.where(SetAside.replayed_at.is_(None))
    if after is not None:
        query = query.where(SetAside.id > after)
    return session.scalars(query).all()


def open_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(SetAside.stage, func.count())
        .where(SetAside.replayed_at.is_(None))
        .group_by(SetAside.stage)
    ).all()
    return {stage: count for stage, count in rows}


def total_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(SetAside.stage, func.count()).group_by(SetAside.stage)).all()
    return {stage: count for stage, count in rows}


def close(row: SetAside, *, at: datetime) -> None:
    row.replayed_at = at
