"""The quarantine's replay: a held item mapped again with the current code and stored.

Everything here runs inside the caller's transaction.
"""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.events import repository
from service.events.api_events import describe, to_canonical
from service.events.body import JsonError
from service.events.canonical import CanonicalEvent, IgnoredTopic, MappingError
from service.events.intake import mapped_and_checked, store
from service.events.models import QuarantinedEvent
from service.events.schemas import ApiEvent
from service.pipeline.stages import StageName, nudge
from service.vocabulary import DeliveryStatus

# The quarantine's topic for a stored event that could not be put on a profile.
SET_ASIDE_TOPIC = "resolve"
REPLAYED = "replayed"


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
    if item.status == REPLAYED:
        return REPLAYED, 0
    event_id = item.payload.get("event_id") if isinstance(item.payload, dict) else None
    if item.topic == SET_ASIDE_TOPIC and item.delivery_id is None and isinstance(event_id, int):
        # An event that could not be put on a profile: let the resolvers try again.
        repository.retry_resolution(session, event=event_id)
        nudge(session, StageName.RESOLVE)
        repository.mark_replayed(session, item)
        return REPLAYED, 0
    events = _mapped_again(session, item)
    stored = store(session, events=events, delivery=item.delivery_id)
    if item.delivery_id is not None:
        repository.set_delivery_status(
            session, delivery=item.delivery_id, status=DeliveryStatus.PROCESSED
        )
    repository.mark_replayed(session, item)
    return REPLAYED, len(stored.accepted)


def _mapped_again(session: Session, item: QuarantinedEvent) -> list[CanonicalEvent]:
    try:
        if item.delivery_id is not None:
            delivery = repository.get_delivery(session, item.delivery_id)
            assert delivery is not None  # a foreign key guarantees it
            return mapped_and_checked(
                source=delivery.source,
                topic=delivery.topic,
                body=delivery.body,
                delivery_id=delivery.delivery_id,
            )
        raw = item.payload if isinstance(item.payload, dict) else {}
        return [to_canonical(ApiEvent.model_validate(raw), raw=raw, received_at=item.received_at)]
    except JsonError as exc:
        raise ReplayFailed(exc.reason, "body") from exc
    except IgnoredTopic as exc:
        raise ReplayFailed(f"the topic is not used: {exc}", None) from exc
    except (MappingError, ValidationError) as exc:
        raise ReplayFailed(*describe(exc)) from exc
    except ValueError as exc:
        raise ReplayFailed(f"the body is not valid JSON: {exc}", None) from exc
