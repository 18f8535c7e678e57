"""SQL for received webhooks, events and the quarantine."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, func, select, text, update
from sqlalchemy.orm import Session, defer

from service.db import json_document
from service.events.checks import printable
from service.events.models import QuarantinedEvent, WebhookDelivery
from service.vocabulary import DeliveryStatus

# Deliveries and the events they map to, any number in one round trip (concurrent
# requests share one transaction: one commit, one fsync). A delivery id seen before
# inserts nothing at all, so a redelivery has no second effect. Bodies travel base64
# in the JSON document: a bytea[] parameter goes as escaped text and cost twice as much.
_INSERT_DELIVERIES = text(
    """
    WITH given AS (
        SELECT d.source, d.delivery_id, d.topic, d.headers, d.status,
               decode(d.body, 'base64') AS body
        FROM json_to_recordset(CAST(:deliveries AS json))
                 AS d(source text, delivery_id text, topic text, headers jsonb, status text,
                      body text)),
    delivery AS (
        INSERT INTO webhook_deliveries (source, delivery_id, topic, headers, body, status)
        SELECT source, delivery_id, topic, headers, body, status FROM given
        ON CONFLICT (source, delivery_id) DO NOTHING
        RETURNING id, source, delivery_id),
    stored AS (
        INSERT INTO events (source, message_id, identity_keys, type, name, occurred_at,
                            received_at, properties, context, delivery_id)
        SELECT r.source, r.message_id, r.identity_keys, r.type, r.name, r.occurred_at,
               r.received_at, r.properties, r.context, delivery.id
        FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS r(
            source text, message_id text, identity_keys jsonb, type text, name text,
            occurred_at timestamptz, received_at timestamptz, properties jsonb, context jsonb,
            delivery_source text, delivery_key text)
        JOIN delivery ON delivery.source = r.delivery_source
                     AND delivery.delivery_id = r.delivery_key
        ORDER BY r.source, r.message_id
        ON CONFLICT (source, message_id) DO NOTHING
        RETURNING delivery_id)
    SELECT delivery.id, delivery.source, delivery.delivery_id,
           (SELECT count(*) FROM stored WHERE stored.delivery_id = delivery.id) AS events
    FROM delivery
    """
)


@dataclass(frozen=True)
class Received:
    """A verified webhook delivery, as received."""

    source: str
    delivery_id: str
    topic: str | None
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class NewDelivery:
    delivery: Received
    status: DeliveryStatus
    # Event rows (`intake.event_rows`); joined to their delivery by source and id.
    events: Sequence[dict[str, Any]]


def insert_deliveries(
    session: Session, deliveries: Sequence[NewDelivery]
) -> dict[tuple[str, str], tuple[int, int]]:
    """Store deliveries and their events in one statement. Returns, for each delivery
    stored now, (source, delivery id) → (its row id, events stored); a delivery id seen
    before, or twice in `deliveries`, is stored once.

    Rows are inserted in key order, so two concurrent groups sharing keys (redeliveries
    arriving at two processes) wait for each other instead of deadlocking."""
    unique: dict[tuple[str, str], NewDelivery] = {}
    for new in deliveries:
        unique.setdefault((new.delivery.source, new.delivery.delivery_id), new)
    ordered = [unique[key] for key in sorted(unique)]
    rows = session.execute(
        _INSERT_DELIVERIES,
        {
            "deliveries": json_document(
                [
                    {
                        "source": new.delivery.source,
                        "delivery_id": new.delivery.delivery_id,
                        "topic": new.delivery.topic,
                        "headers": new.delivery.headers,
                        "status": new.status,
                        "body": base64.b64encode(new.delivery.body).decode(),
                    }
                    for new in ordered
                ]
            ),
            "events": json_document(
                [
                    row
                    | {
                        "delivery_source": new.delivery.source,
                        "delivery_key": new.delivery.delivery_id,
                    }
                    for new in ordered
                    for row in new.events
                ]
            ),
        },
    )
    return {(r.source, r.delivery_id): (r.id, r.events) for r in rows}


def set_delivery_status(session: Session, *, delivery: int, status: DeliveryStatus) -> None:
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery).values(status=status)
    )


def get_delivery(session: Session, delivery: int) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery)


# One JSON document carries the whole batch: a single parameter to send and parse,
# instead of ten arrays of 500 escaped elements.
#
# Rows go in in key order. An insert waits for a concurrent transaction that inserted
# the same key, so two batches sharing message ids in different orders each held a key
# the other waited for: a deadlock, and one of them failed. In one order the later one
# simply waits. Ids are still drawn in the batch's order (the inner query numbers the
# rows as they come, before the sort), so events of one batch keep the sender's order
# where times tie.
_INSERT_EVENTS = text(
    """
    INSERT INTO events (id, source, message_id, identity_keys, type, name, occurred_at,
                        received_at, properties, context, delivery_id)
    SELECT id, source, message_id, identity_keys, type, name, occurred_at, received_at,
           properties, context, delivery_id
    FROM (SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id, r.*
          FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
            source text, message_id text, identity_keys jsonb, type text, name text,
            occurred_at timestamptz, received_at timestamptz, properties jsonb,
            context jsonb, delivery_id bigint)) AS numbered
    ORDER BY source, message_id
    ON CONFLICT (source, message_id) DO NOTHING
    RETURNING source, message_id
    """
)


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert events in one statement; returns the (source, message_id) of the new ones
    (a message id already stored, even by a concurrent transaction, is skipped)."""
    if not rows:
        return set()
    document = json_document(list(rows))
    return {(r.source, r.message_id) for r in session.execute(_INSERT_EVENTS, {"rows": document})}


def claim_unresolved(session: Session, *, limit: int) -> Sequence[Any]:
    """Lock up to `limit` unresolved events, oldest first, skipping those another
    resolver holds."""
    return session.execute(
        text(
            "SELECT id, source, message_id, type, name, occurred_at, properties, "
            "identity_keys FROM events WHERE customer_id IS NULL AND resolve_error IS NULL "
            "ORDER BY id "
            "LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"limit": limit},
    ).all()


def assign_customers(session: Session, assignments: Sequence[tuple[int, Any]]) -> None:
    if not assignments:
        return
    session.execute(
        text(
            "UPDATE events AS e SET customer_id = a.customer_id, identity_keys = NULL "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS a(id bigint, customer_id uuid) "
            "WHERE e.id = a.id"
        ),
        {"rows": json_document([{"id": i, "customer_id": c} for i, c in assignments])},
    )


def mark_unresolvable(session: Session, *, event: int, error: str) -> None:
    session.execute(
        text("UPDATE events SET resolve_error = :error WHERE id = :id"),
        {"error": error, "id": event},
    )


def retry_resolution(session: Session, *, event: int) -> None:
    session.execute(text("UPDATE events SET resolve_error = NULL WHERE id = :id"), {"id": event})


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
        payload=_storable(payload),
        source=source,
        topic=printable(topic) if topic else topic,
        delivery_id=delivery,
        reason=printable(reason)[:2000],
        field=printable(field) if field else field,
    )
    session.add(row)
    session.flush()
    return row.id


def _storable(payload: Any) -> Any:
    """The payload, or a readable stand-in when JSONB cannot hold it (a NUL character, a
    lone surrogate, NaN or Infinity): the input is kept either way."""
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")  # fails on a lone surrogate
    except (TypeError, ValueError):
        return {"unstorable_payload": repr(payload)[:32768]}
    if "\\u0000" in text:
        return {"unstorable_payload": repr(payload)[:32768]}
    return payload


def quarantine_page(
    session: Session, *, status: str | None, after_id: int | None, limit: int
) -> list[tuple[QuarantinedEvent, int]]:
    """Up to `limit` items after `after_id`, each with its payload's size in bytes as
    JSON text, the payloads themselves not read (`quarantine_payloads`)."""
    size = func.coalesce(func.octet_length(cast(QuarantinedEvent.payload, Text)), 0)
    query = select(QuarantinedEvent, size).options(defer(QuarantinedEvent.payload))
    if status:
        query = query.where(QuarantinedEvent.status == status)
    if after_id is not None:
        query = query.where(QuarantinedEvent.id > after_id)
    rows = session.execute(query.order_by(QuarantinedEvent.id).limit(limit))
    return [(row, int(payload_bytes)) for row, payload_bytes in rows]


def quarantine_payloads(session: Session, ids: Sequence[int]) -> dict[int, Any]:
    if not ids:
        return {}
    query = select(QuarantinedEvent.id, QuarantinedEvent.payload).where(
        QuarantinedEvent.id.in_(ids)
    )
    return {item: payload for item, payload in session.execute(query)}


def get_quarantined(session: Session, item: int) -> QuarantinedEvent | None:
    return session.get(QuarantinedEvent, item)


def get_quarantined_for_update(session: Session, item: int) -> QuarantinedEvent | None:
    return session.scalar(
        select(QuarantinedEvent).where(QuarantinedEvent.id == item).with_for_update()
    )


def mark_replayed(session: Session, item: QuarantinedEvent, *, at: datetime | None = None) -> None:
    item.status = "replayed"
    item.replayed_at = at or session.scalar(select(func.now()))
