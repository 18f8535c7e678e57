"""The evaluation outbox: resolved events that the segments and the rules have not yet
taken (`evaluated_at IS NULL`), claimed in batches; and events read back in time order
for a replay."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import BigInteger, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from service.events.models import Event
from service.vocabulary import SEGMENT_EVENT_SOURCE


def claim_unevaluated(session: Session, *, limit: int) -> Sequence[Event]:
    """Resolved events not yet evaluated, locked (concurrent workers take other ones),
    in customer order so per-customer locks are always taken in one order. Events of
    customers' own making come first, up to four fifths of the batch, then segments'
    announcements, then more of the former if there is room: a backfill that moves
    50,000 customers into a segment does not hold up the next page view, and steady
    traffic does not hold up the announcements until they are too old to act on."""
    live = f"events.source <> '{SEGMENT_EVENT_SOURCE}'"  # literals, in the partial index's terms
    announced = f"events.source = '{SEGMENT_EVENT_SOURCE}'"
    first = limit - limit // 5
    own = _claim(session, live, limit=first)
    ids = own + _claim(session, announced, limit=limit - len(own))
    if len(own) == first and len(ids) < limit:  # more waiting, and room left
        ids += _claim(session, live, limit=limit - len(ids), after=own[-1])
    if not ids:
        return []
    # Read as the rows are now, locked: an Event this session holds from an earlier
    # attempt (a set-aside event since repaired and replayed) is refreshed, not reused.
    return session.scalars(
        select(Event)
        .where(Event.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger))))
        .order_by(Event.customer_id, Event.occurred_at, Event.id)
        .execution_options(populate_existing=True)
    ).all()


def _claim(session: Session, which: str, *, limit: int, after: int = 0) -> list[int]:
    if limit <= 0:
        return []
    return list(
        session.scalars(
            select(Event.id)
            .where(Event.customer_id.is_not(None), Event.evaluated_at.is_(None), text(which))
            .where(Event.id > after)
            .order_by(Event.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def mark_evaluated(session: Session, ids: Sequence[int], *, at: datetime) -> None:
    session.execute(update(Event).where(Event.id.in_(ids)).values(evaluated_at=at))


def unmark_evaluated(session: Session, event_id: int) -> None:
    """Put an event back in the outbox (a set-aside event replayed)."""
    session.execute(update(Event).where(Event.id == event_id).values(evaluated_at=None))


def events_between(session: Session, *, since: datetime, until: datetime) -> Iterable[Event]:
    """Customers' events in [since, until], in time order, streamed."""
    return session.scalars(
        select(Event)
        .where(
            Event.customer_id.is_not(None), Event.occurred_at >= since, Event.occurred_at <= until
        )
        .order_by(Event.occurred_at, Event.id)
        .execution_options(yield_per=1000)
    )


def get_event(session: Session, event_id: int) -> Event | None:
    return session.get(Event, event_id)
