"""The event names a file may use without declaring them, and the type of a field that
names an event: any string (a shop's own events are listed under `events:`), offered
to editors with the built-in names to complete."""

from __future__ import annotations

from typing import Annotated

from pydantic import WithJsonSchema

from service.events.canonical import ECOMMERCE_EVENTS
from service.vocabulary import SEGMENT_EVENTS

# Entering and leaving a segment are events too (properties: segment, version, reason).
BUILTIN_EVENTS = frozenset(
    str(name)
    for name in ECOMMERCE_EVENTS | SEGMENT_EVENTS | {"Page Viewed", "Screen Viewed", "Identify"}
)

# The built-in names as an `enum` editors complete, beside any string (custom events).
EVENT_NAME_SCHEMA = {
    "anyOf": [{"enum": sorted(BUILTIN_EVENTS)}, {"type": "string"}],
    "description": "A built-in event, or one listed under `events:` at the top of the file.",
}

EventName = Annotated[str, WithJsonSchema(EVENT_NAME_SCHEMA)]
