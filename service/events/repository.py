"""SQL for received webhooks, events and the quarantine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from service.events.models import Event, QuarantinedEvent, WebhookDelivery


def insert_delivery(
    session: Session,
    *,
    source: str,
    delivery_id: str,
    topic: str | None,
    headers: dict[str, str],
    body: bytes,
) -> int | None:
    """Store a delivery; None if this delivery id was received before."""
    stmt = (
        insert(WebhookDelivery)
        .values(
            source=source,
            delivery_id=delivery_id,
            topic=topic,
            headers=headers,
            body=body,
            status="received",
        )
        .on_conflict_do_nothing(index_elements=["source", "delivery_id"])
        .returning(WebhookDelivery.id)
    )
    return session.scalar(stmt)


def set_delivery_status(session: Session, *, delivery: int, status: str) -> None:
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery).values(status=status)
    )


def get_delivery(session: Session, delivery: int) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery)


def known_message_ids(session: Session, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    wanted = list(set(pairs))
    if not wanted:
        return set()
    rows = session.execute(
        select(Event.source, Event.message_id).where(
            tuple_(Event.source, Event.message_id).in_(wanted)
        )
    )
    return {(r.source, r.message_id) for r in rows}


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert events; returns the (source, message_id) of those that were new."""
    if not rows:
        return set()
    stmt = (
        insert(Event)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["source", "message_id"])
        .returning(Event.source, Event.message_id)
    )
    return {(r.source, r.message_id) for r in session.execute(stmt)}


def quarantine(
    session: Session,
    *,
    source: str,
    reason: str,
    field: str | None = None,
    topic: str | None = None,
    delivery: int | None = None,
    payload: Any = None,
) -> int:
    row = QuarantinedEvent(
        source=source,
        topic=topic,
        delivery_id=delivery,
        payload=payload,
        reason=reason[:2000],
        field=field,
    )
    session.add(row)
    session.flush()
    return row.id


def quarantine_page(
    session: Session, *, status: str | None, after_id: int | None, limit: int
) -> Sequence[QuarantinedEvent]:
    query = select(QuarantinedEvent)
    if status:
        query = query.where(QuarantinedEvent.status == status)
    if after_id is not None:
        query = query.where(QuarantinedEvent.id > after_id)
    return session.scalars(query.order_by(QuarantinedEvent.id).limit(limit)).all()


def get_quarantined_for_update(session: Session, item: int) -> QuarantinedEvent | None:
    return session.scalar(
        select(QuarantinedEvent).where(QuarantinedEvent.id == item).with_for_update()
    )


def mark_replayed(session: Session, item: QuarantinedEvent, *, at: datetime | None = None) -> None:
    item.status = "replayed"
    item.replayed_at = at or session.scalar(select(func.now()))
