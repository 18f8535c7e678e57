"""Intake: canonical events and webhook deliveries stored, each exactly once.

Everything here runs inside the caller's transaction; the request commits it before
answering, so an accepted event is durable before the 2xx. Stored events are put on
profiles after the commit (`service.profiles.resolution`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from service.events import repository
from service.events.body import JsonError, load_json
from service.events.canonical import CanonicalEvent, IgnoredTopic, MappingError
from service.events.checks import check_storable
from service.events.identity import keys_for, order_key
from service.events.platforms import platform_for
from service.events.repository import Received
from service.pipeline.stages import StageName, nudge
from service.vocabulary import DeliveryStatus, EventType


@dataclass(frozen=True)
class Stored:
    accepted: set[tuple[str, str]]


def store(
    session: Session, *, events: Sequence[CanonicalEvent], delivery: int | None = None
) -> Stored:
    """Store events with their identity keys, to be put on profiles after the commit.
    A message id stored before (earlier in the batch, by an earlier request or by a
    concurrent transaction) is a duplicate with no effect."""
    inserted = repository.insert_events(session, event_rows(events, delivery=delivery))
    if inserted:
        nudge(session, StageName.RESOLVE)
    return Stored(accepted=inserted)


def event_rows(
    events: Sequence[CanonicalEvent], *, delivery: int | None = None
) -> list[dict[str, Any]]:
    """Rows for the events table, one per message id, with identity keys hashed and
    encrypted (the raw values are not stored)."""
    unique: dict[tuple[str, str], CanonicalEvent] = {}
    for event in events:
        unique.setdefault((event.source, event.message_id), event)
    received_at = datetime.now(UTC)
    return [
        {
            "source": e.source,
            "message_id": e.message_id,
            "identity_keys": [
                k.to_json()
                for k in keys_for(
                    e.identifiers, source=e.source, order_id=order_key(e.name, e.properties)
                )
            ],
            "type": e.type,
            "name": e.name,
            "occurred_at": e.occurred_at,
            "received_at": received_at,
            "properties": e.properties if e.type != EventType.IDENTIFY else e.traits,
            "context": e.context,
            "delivery_id": delivery,
        }
        for e in unique.values()
    ]


def map_delivery(
    *, source: str, topic: str | None, payload: Any, delivery_id: str
) -> list[CanonicalEvent]:
    """The canonical events of a verified delivery, by its platform's mapping."""
    if not isinstance(payload, dict):
        raise MappingError("the body is not a JSON object")
    return platform_for(source).map(
        source=source, topic=topic or "", payload=payload, delivery_id=delivery_id
    )


def mapped_and_checked(
    *, source: str, topic: str | None, body: bytes, delivery_id: str
) -> list[CanonicalEvent]:
    """`map_delivery` of a delivery's body, every event checked storable (JsonError,
    IgnoredTopic and MappingError as they are raised)."""
    events = map_delivery(
        source=source,
        topic=topic,
        payload=load_json(body, finite=True),
        delivery_id=delivery_id,
    )
    for event in events:
        check_storable(event)
    return events


def receive_webhooks(
    session: Session, *, deliveries: Sequence[Received]
) -> list[tuple[DeliveryStatus, int]]:
    """Store verified deliveries and what they map to; returns (status, events stored)
    for each, in order. A delivery id stored before, or earlier in `deliveries`, is a
    duplicate with no effect.

    A delivery that cannot be mapped is kept (delivery row + quarantine entry) and
    acknowledged: retrying would not fix it, replaying after a fix will.
    """
    mapped = [_map(d) for d in deliveries]
    stored = repository.insert_deliveries(
        session,
        [
            repository.NewDelivery(delivery=d, status=status, events=event_rows(events))
            for d, (status, events, _) in zip(deliveries, mapped, strict=True)
        ],
    )
    results: list[tuple[DeliveryStatus, int]] = []
    for d, (status, _, problem) in zip(deliveries, mapped, strict=True):
        row = stored.pop((d.source, d.delivery_id), None)
        if row is None:
            results.append((DeliveryStatus.DUPLICATE, 0))
            continue
        delivery, count = row
        if problem is not None:
            repository.quarantine(
                session,
                source=d.source,
                topic=d.topic,
                delivery=delivery,
                reason=problem[0],
                field=problem[1],
            )
        results.append((status, count))
    if any(count for _, count in results):
        nudge(session, StageName.RESOLVE)
    return results


def _map(
    d: Received,
) -> tuple[DeliveryStatus, list[CanonicalEvent], tuple[str, str | None] | None]:
    """(delivery status, its events, why it is quarantined if it is)."""
    try:
        events = mapped_and_checked(
            source=d.source, topic=d.topic, body=d.body, delivery_id=d.delivery_id
        )
    except JsonError as exc:
        return DeliveryStatus.QUARANTINED, [], (exc.reason, "body")
    except IgnoredTopic:
        return DeliveryStatus.IGNORED, [], None
    except MappingError as exc:
        return DeliveryStatus.QUARANTINED, [], (exc.reason, exc.field)
    return DeliveryStatus.PROCESSED, events, None
