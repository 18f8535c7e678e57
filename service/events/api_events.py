"""The events API's intake: Segment-shaped events validated one by one, the bad ones
quarantined, the rest stored (`intake.store`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.events import repository
from service.events.canonical import CanonicalEvent, Identifiers, MappingError
from service.events.checks import API_FIELDS, NOT_FINITE, check_storable, unstorable
from service.events.identity import keys_for
from service.events.intake import store
from service.events.platforms.common import check_amounts
from service.events.schemas import ApiEvent, EventResult
from service.settings import get_settings
from service.vocabulary import EventType, IntakeStatus

API_SOURCE = "api"


def to_canonical(event: ApiEvent, *, raw: dict[str, Any], received_at: datetime) -> CanonicalEvent:
    # A group call's traits describe the group (an account), not the user.
    group_traits = dict(event.traits) if event.type == EventType.GROUP else None
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
        name=event.event if event.type == EventType.TRACK else event.name,
        occurred_at=occurred,
        identifiers=Identifiers(
            user_id=event.user_id,
            # An alias links the id the user had before (usually the anonymous id of
            # their browsing) to their user id: resolution merges the two profiles.
            anonymous_id=event.previous_id if event.type == EventType.ALIAS else event.anonymous_id,
            email=str(email) if email else None,
            phone=str(phone) if phone else None,
            loyalty_number=_str_or_none(traits.get("loyalty_number")),
        ),
        properties=properties,
        traits=traits if event.type == EventType.IDENTIFY else {},
        context=context,
    )
    # The time window, and strings and numbers PostgreSQL takes; before the ids are
    # hashed, as a lone surrogate in an email cannot even be encoded.
    check_storable(canonical, raw=raw)
    if event.type != EventType.IDENTIFY:
        check_amounts(canonical.properties)
    if not keys_for(canonical.identifiers, source=API_SOURCE):
        raise MappingError("every id of the event is empty or blocked", field="anonymousId")
    return canonical


def ingest_api_events(session: Session, *, raw_events: Sequence[Any]) -> list[EventResult]:
    """Validate each event on its own, quarantine the bad ones, store the rest."""
    received_at = datetime.now(UTC)
    results: list[EventResult] = []
    good: list[tuple[int, CanonicalEvent]] = []
    for index, raw in enumerate(raw_events):
        message_id = raw.get("messageId") if isinstance(raw, dict) else None
        try:
            event = _validated(raw, received_at=received_at)
        except (MappingError, ValidationError) as exc:
            reason, field = describe(exc)
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
                    status=IntakeStatus.REJECTED,
                    reason=reason,
                    field=field,
                )
            )
            continue
        good.append((index, event))
        results.append(
            EventResult(index=index, message_id=event.message_id, status=IntakeStatus.ACCEPTED)
        )

    stored = store(session, events=[e for _, e in good])
    duplicate = {"status": IntakeStatus.DUPLICATE}
    for index, event in good:
        if (event.source, event.message_id) not in stored.accepted:
            results[index] = results[index].model_copy(update=duplicate)
    # Two copies of one message in the same batch: the second is the duplicate.
    seen: set[str] = set()
    for index, event in good:
        if event.message_id in seen and results[index].status == IntakeStatus.ACCEPTED:
            results[index] = results[index].model_copy(update=duplicate)
        seen.add(event.message_id)
    return results


def _validated(raw: Any, *, received_at: datetime) -> CanonicalEvent:
    if not isinstance(raw, dict):
        raise MappingError("an event must be a JSON object")
    limit = get_settings().events_max_event_bytes
    if _size(raw) > limit:
        raise MappingError(f"the event is larger than {limit} bytes")
    return to_canonical(ApiEvent.model_validate(raw), raw=raw, received_at=received_at)


def _size(raw: dict[str, Any]) -> int:
    """The event's size as JSON. Encoding it also finds NaN, Infinity and numbers beyond
    a double's range (read from the body as floats, stored they would become null): the
    event holding one is refused, naming the field."""
    try:
        return len(json.dumps(raw, default=str, allow_nan=False))
    except ValueError as exc:
        path, why = unstorable(raw, first=API_FIELDS) or ("", NOT_FINITE)
        raise MappingError(f"a value cannot be stored: it {why}", field=path or None) from exc


def describe(exc: MappingError | ValidationError) -> tuple[str, str | None]:
    """The reason and the field (dotted) of a refused event."""
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
