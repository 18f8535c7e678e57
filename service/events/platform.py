"""What a webhook platform is to intake: one object per platform, over one vocabulary.

A platform names itself (its source, and its endpoint's path), says which headers of a
delivery are worth keeping, checks a delivery's signature, says which delivery it is
(the key a redelivery repeats) and on which topic, and maps its payload to canonical
events. `service/events/platforms/` holds one module per platform and the registry;
`service/events/webhooks.py` serves every registered platform with one handler.

Pure: no database, no HTTP. A missing header is `MissingHeader` (the endpoint answers
400), a bad signature `signatures.SignatureError` (401).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from service.events.body import JsonError, load_json
from service.events.canonical import CanonicalEvent
from service.events.checks import printable

# Headers every platform's deliveries keep. Signatures are never kept.
COMMON_KEPT = ("content-type", "user-agent")


class Platform(Protocol):
    """A webhook sender: the endpoint `/v1/webhooks/{name}` is served for it."""

    @property
    def name(self) -> str:
        """The source its deliveries and events are stored under."""

    @property
    def description(self) -> str:
        """The endpoint's documentation: the signature and the delivery key."""

    @property
    def kept_headers(self) -> tuple[str, ...]:
        """Lowercase names of the headers stored with a delivery."""

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], *, tolerance_s: int
    ) -> None:
        """Raise `SignatureError` unless one of `secrets` signed the delivery."""

    def ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether the request is an unsigned check the sender makes of the endpoint,
        answered 200 with nothing stored."""

    def topic(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """What the delivery is about (mapping picks its mapper by it)."""

    def delivery_key(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The delivery's id: a redelivery carries the same, and has no second effect."""

    def map(
        self, *, source: str, topic: str, payload: dict[str, Any], delivery_id: str
    ) -> list[CanonicalEvent]:
        """The canonical events of a delivery's payload (`platforms.common`: a topic not
        used raises `IgnoredTopic`, a payload lacking a field `MappingError`)."""


class MissingHeader(ValueError):
    """A header the platform always sends is absent or empty (→ 400)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def required(headers: Mapping[str, str], name: str) -> str:
    """The header's value; `name` as the platform documents it."""
    value = headers.get(name.lower())
    if not value:
        raise MissingHeader(name)
    return value


def json_field(body: bytes, *names: str) -> str | None:
    """The first of `names` the JSON body holds, as text that can be stored as a
    delivery's id or topic (a NUL escaped); None when the body is not a JSON object.
    The mapping refuses the value itself, naming the field."""
    try:
        payload = load_json(body)
    except JsonError:
        return None  # kept in the quarantine with the reason once stored
    if not isinstance(payload, dict):
        return None
    return next((printable(str(payload[n])) for n in names if payload.get(n)), None)
