"""Intake: webhooks and API events become stored canonical events, each exactly once.

Everything here runs inside the caller's transaction; the request commits it before
answering, so an accepted event is durable before the 2xx.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.events import platforms, repository
from service.events.body import JsonError, load_json
from service.events.canonical import CanonicalEvent, Identifiers, IgnoredTopic, MappingError
from service.events.checks import (
    API_FIELDS,
    NOT_FINITE,
    check_storable,
    unstorable,
)
from service.events.platforms.common import check_amounts
from service.events.repository import Delivery
from service.events.schemas import ApiEvent, EventResult
from service.pipeline.isolation import isolated
from service.pipeline.stages import StageName, nudge
from service.profiles import service as profiles
from service.profiles.identity import IdentityKey, keys_for
from service.settings import get_settings

API_SOURCE = "api"
log = structlog.get_logger(__name__)

# The quarantine's topic for a stored event that could not be put on a profile.
SET_ASIDE_TOPIC = "resolve"


@dataclass(frozen=True)
class Stored:
    accepted: set[tuple[str, str]]


def store(
    session: Session, *, events: Sequence[CanonicalEvent], delivery: int | None = None
) -> Stored:
    """Store events with their identity keys; they are put on profiles after the commit
    (`resolve_pending`). A message id stored before (earlier in the batch, by an earlier
    request or by a concurrent transaction) is a duplicate with no effect."""
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
                    e.identifiers,
                    source=e.source,
                    order_id=profiles.order_key(e.name, e.properties),
                )
            ],
            "type": e.type,
            "name": e.name,
            "occurred_at": e.occurred_at,
            "received_at": received_at,
            "properties": e.properties if e.type != "identify" else e.traits,
            "context": e.context,
            "delivery_id": delivery,
        }
        for e in unique.values()
    ]


def resolve_pending(session: Session, *, limit: int = 1000) -> int:
    """Put up to `limit` stored events on profiles (creating and merging profiles, and
    applying their effects); returns how many. Concurrent callers take disjoint events."""
    rows = repository.claim_unresolved(session, limit=limit)
    if not rows:
        return 0
    pending = [
        profiles.PendingEvent(
            id=r.id,
            source=r.source,
            message_id=r.message_id,
            type=r.type,
            name=r.name,
            occurred_at=r.occurred_at,
            properties=r.properties,
            keys=[IdentityKey.from_json(k) for k in r.identity_keys or []],
        )
        for r in rows
    ]
    # One bad event must not hold back the rest: it is set aside (with the reason, in
    # the quarantine) and the others are resolved.
    failed = isolated(session, pending, lambda batch: _resolve(session, batch), stage="resolve")
    for event, error in failed:
        _set_aside(session, event, error=type(error).__name__)
    return len(rows)


def _resolve(session: Session, pending: Sequence[profiles.PendingEvent]) -> None:
    customers = profiles.resolve(session, pending)
    repository.assign_customers(
        session, [(e.id, c) for e, c in zip(pending, customers, strict=True)]
    )
    profiles.apply(session, list(zip(pending, customers, strict=True)))


def _set_aside(session: Session, event: profiles.PendingEvent, *, error: str) -> None:
    reason = f"could not be put on a profile ({error})"
    repository.mark_unresolvable(session, event=event.id, error=reason)
    repository.quarantine(
        session,
        source=event.source,
        topic=SET_ASIDE_TOPIC,
        reason=reason,
        field=None,
        payload={"event_id": event.id, "message_id": event.message_id},
    )
    log.error("event_set_aside", event_id=event.id, error_type=error)


# --- webhooks ---------------------------------------------------------------------


def map_delivery(
    *, source: str, topic: str | None, payload: Any, delivery_id: str
) -> list[CanonicalEvent]:
    if not isinstance(payload, dict):
        raise MappingError("the body is not a JSON object")
    if source == "shopify":
        return platforms.map_shopify(topic=topic or "", payload=payload, delivery_id=delivery_id)
    if source == "woocommerce":
        return platforms.map_woocommerce(
            topic=topic or "", payload=payload, delivery_id=delivery_id
        )
    if source == "stripe":
        return platforms.map_stripe(payload=payload)
    return platforms.map_standard(source=source, payload=payload, delivery_id=delivery_id)


def receive_webhooks(session: Session, *, deliveries: Sequence[Delivery]) -> list[tuple[str, int]]:
    """Store verified deliveries and what they map to; returns (status, events stored)
    for each, in order. A delivery id stored before, or earlier in `deliveries`, is a
    duplicate with no effect.

    A delivery that cannot be mapped is kept (delivery row + quarantine entry) and
    acknowledged: retrying would not fix it, replaying after a fix will.
    """
    mapped = [_map_delivery(d) for d in deliveries]
    stored = repository.insert_deliveries(
        session,
        [
            repository.NewDelivery(delivery=d, status=status, events=event_rows(events))
            for d, (status, events, _) in zip(deliveries, mapped, strict=True)
        ],
    )
    results: list[tuple[str, int]] = []
    for d, (status, _, problem) in zip(deliveries, mapped, strict=True):
        row = stored.pop((d.source, d.delivery_id), None)
        if row is None:
            results.append(("duplicate", 0))
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


def _map_delivery(
    d: Delivery,
) -> tuple[str, list[CanonicalEvent], tuple[str, str | None] | None]:
    """(delivery status, its events, why it is quarantined if it is)."""
    try:
        payload = load_json(d.body, finite=True)
    except JsonError as exc:
        return "quarantined", [], (exc.reason, "body")
    try:
        events = map_delivery(
            source=d.source, topic=d.topic, payload=payload, delivery_id=d.delivery_id
        )
        for event in events:
            check_storable(event)
    except IgnoredTopic:
        return "ignored", [], None
    except MappingError as exc:
        return "quarantined", [], (exc.reason, exc.field)
    return "processed", events, None


# --- the events API ---------------------------------------------------------------


def to_canonical(event: ApiEvent, *, raw: dict[str, Any], received_at: datetime) -> CanonicalEvent:
    # A group call's traits describe the group (an account), not the user.
    group_traits = dict(event.traits) if event.type == "group" else None
    traits = dict(event.traits) if group_traits is None else {}
    found = event.context.get("traits")
    context_traits: dict[str, Any] = found if isinstance(found, dict) else {}
    email = (
        traits.pop("email", None) or event.properties.get("email") or context_traits.get("email")
    )
    phone = traits.pop("phone", None) or context_traits.get("phone")
    # Raw contact data travels only as identifiers; it is hashed and encrypted there.
    context = {k: v for k, v in event.context.items() if k not in ("traits", "ip")}
    occurred = event.timestamp or received_at
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    try:
        occurred = occurred.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise MappingError("the timestamp is out of range", field="timestamp") from exc
    properties = {k: v for k, v in event.properties.items() if k != "email"}
    if group_traits is not None:
        properties = {"group_id": event.group_id, "group_traits": group_traits}
    canonical = CanonicalEvent(
        source=API_SOURCE,
        message_id=event.message_id or _content_id(raw),
        type=event.type,
        name=event.event if event.type == "track" else event.name,
        occurred_at=occurred,
        identifiers=Identifiers(
            user_id=event.user_id,
            # An alias links the id the user had before (usually the anonymous id of
            # their browsing) to their user id: resolution merges the two profiles.
            anonymous_id=event.previous_id if event.type == "alias" else event.anonymous_id,
            email=str(email) if email else None,
            phone=str(phone) if phone else None,
            loyalty_number=_str_or_none(traits.get("loyalty_number")),
        ),
        properties=properties,
        traits=traits if event.type == "identify" else {},
        context=context,
    )
    # The time window, and strings and numbers PostgreSQL takes; before the ids are
    # hashed, as a lone surrogate in an email cannot even be encoded.
    check_storable(canonical, raw=raw)
    if event.type != "identify":
        check_amounts(canonical.properties)
    if not keys_for(canonical.identifiers, source=API_SOURCE):
        raise MappingError("every id of the event is empty or blocked", field="anonymousId")
    return canonical


def ingest_api_events(session: Session, *, raw_events: Sequence[Any]) -> list[EventResult]:
    """Validate each event on its own, quarantine the bad ones, store the rest."""
    settings = get_settings()
    received_at = datetime.now(UTC)
    results: list[EventResult] = []
    good: list[tuple[int, CanonicalEvent]] = []
    for index, raw in enumerate(raw_events):
        message_id = raw.get("messageId") if isinstance(raw, dict) else None
        try:
            if not isinstance(raw, dict):
                raise MappingError("an event must be a JSON object")
            if _size(raw) > settings.events_max_event_bytes:
                raise MappingError(
                    f"the event is larger than {settings.events_max_event_bytes} bytes"
                )
            event = to_canonical(ApiEvent.model_validate(raw), raw=raw, received_at=received_at)
        except (MappingError, ValidationError) as exc:
            reason, field = _describe(exc)
            repository.quarantine(
                session,
                source=API_SOURCE,
                reason=reason,
                field=field,
                payload=raw if isinstance(raw, dict) else {"not_an_object": repr(raw)[:2000]},
            )
            results.append(
                EventResult(
                    index=index,
                    message_id=_echoed(message_id),
                    status="rejected",
                    reason=reason,
                    field=field,
                )
            )
            continue
        good.append((index, event))
        results.append(EventResult(index=index, message_id=event.message_id, status="accepted"))

    stored = store(session, events=[e for _, e in good])
    for index, event in good:
        if (event.source, event.message_id) not in stored.accepted:
            results[index] = results[index].model_copy(update={"status": "duplicate"})
    # Two copies of one message in the same batch: the second is the duplicate.
    seen: set[str] = set()
    for index, event in good:
        if event.message_id in seen and results[index].status == "accepted":
            results[index] = results[index].model_copy(update={"status": "duplicate"})
        seen.add(event.message_id)
    return results


def _size(raw: dict[str, Any]) -> int:
    """The event's size as JSON. Encoding it also finds NaN, Infinity and numbers beyond
    a double's range (read from the body as floats, stored they would become null): the
    event holding one is refused, naming the field."""
    try:
        return len(json.dumps(raw, default=str, allow_nan=False))
    except ValueError as exc:
        path, why = unstorable(raw, first=API_FIELDS) or ("", NOT_FINITE)
        raise MappingError(f"a value cannot be stored: it {why}", field=path or None) from exc


def _describe(exc: MappingError | ValidationError) -> tuple[str, str | None]:
    if isinstance(exc, MappingError):
        return exc.reason, exc.field
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    return first["msg"], field


def _content_id(raw: dict[str, Any]) -> str:
    """An id for an event sent without `messageId`: the same content, the same id."""
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    return f"sha256:{digest}"


def _echoed(value: Any) -> str | None:
    """A rejected event's message id as sent, in text the answer can carry (a lone
    surrogate is shown as its escape)."""
    text = _str_or_none(value)
    return text.encode("utf-8", "backslashreplace").decode() if text else None


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# --- quarantine -------------------------------------------------------------------


class ReplayFailed(Exception):
    def __init__(self, reason: str, field: str | None) -> None:
        super().__init__(reason)
        self.reason, self.field = reason, field


def replay(session: Session, *, item_id: int) -> tuple[str, int] | None:
    """Map a quarantined item again with the current code and store its events.

    Returns None if there is no such item; raises ReplayFailed (the item stays held)
    if it still cannot be mapped. Replaying a replayed item does nothing.
    """
    item = repository.get_quarantined_for_update(session, item_id)
    if item is None:
        return None
    if item.status == "replayed":
        return "replayed", 0
    event_id = item.payload.get("event_id") if isinstance(item.payload, dict) else None
    if item.topic == SET_ASIDE_TOPIC and item.delivery_id is None and isinstance(event_id, int):
        # An event that could not be put on a profile: let the resolvers try again.
        repository.retry_resolution(session, event=event_id)
        nudge(session, StageName.RESOLVE)
        repository.mark_replayed(session, item)
        return "replayed", 0
    try:
        if item.delivery_id is not None:
            delivery = repository.get_delivery(session, item.delivery_id)
            assert delivery is not None  # a foreign key guarantees it
            events = map_delivery(
                source=delivery.source,
                topic=delivery.topic,
                payload=load_json(delivery.body, finite=True),
                delivery_id=delivery.delivery_id,
            )
            for event in events:
                check_storable(event)
        else:
            raw = item.payload if isinstance(item.payload, dict) else {}
            events = [
                to_canonical(ApiEvent.model_validate(raw), raw=raw, received_at=item.received_at)
            ]
    except JsonError as exc:
        raise ReplayFailed(exc.reason, "body") from exc
    except IgnoredTopic as exc:
        raise ReplayFailed(f"the topic is not used: {exc}", None) from exc
    except (MappingError, ValidationError) as exc:
        raise ReplayFailed(*_describe(exc)) from exc
    except ValueError as exc:
        raise ReplayFailed(f"the body is not valid JSON: {exc}", None) from exc
    stored = store(session, events=events, delivery=item.delivery_id)
    if item.delivery_id is not None:
        repository.set_delivery_status(session, delivery=item.delivery_id, status="processed")
    repository.mark_replayed(session, item)
    return "replayed", len(stored.accepted)
