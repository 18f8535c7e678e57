"""What intake refuses in an event beyond its shape, naming the field each time: a time
outside the accepted window, a value PostgreSQL cannot store. (Amounts that are not
money: `platforms.common.check_amounts`.) Pure functions, the clock aside.

The window: an event happened on or after 2000-01-01 and at most `EVENT_MAX_FUTURE_S`
after the moment it is received (or replayed). Without it one event dated 9999 stopped
rule evaluation (its window's end overflows) and, as an identify, pinned its traits:
a trait keeps its newest value, and nothing could be newer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from service.db import json_document
from service.events.canonical import CanonicalEvent, MappingError
from service.settings import get_settings

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
NOT_FINITE = "is not a finite number (NaN, Infinity, or beyond a double's range)"
# The JSON encoder that writes JSONB parameters takes integers in this range only.
_SMALLEST_INT, _LARGEST_INT = -(2**63), 2**64 - 1


def check_time(moment: datetime, *, field: str | None, now: datetime | None = None) -> datetime:
    """`moment` if it lies in the window, else a MappingError naming `field`."""
    if moment < EARLIEST:
        raise MappingError(f"the time {moment.isoformat()} is before 2000-01-01", field=field)
    ahead = get_settings().event_max_future_s
    if moment > (now or datetime.now(UTC)) + timedelta(seconds=ahead):
        raise MappingError(
            f"the time {moment.isoformat()} is more than {ahead} s in the future", field=field
        )
    return moment


def check_storable(event: CanonicalEvent, *, raw: Mapping[str, Any] | None = None) -> None:
    """Refuse an event PostgreSQL would refuse, naming the field, so that the event is
    rejected on its own rather than failing its whole batch's statement: a NUL
    character (text and JSONB cannot hold one), a lone surrogate (not text), an
    integer beyond 64 bits, a number that is not finite, a time out of the window.

    One encoding of what is stored finds whether anything is wrong; only then is the
    event walked for the field, in `raw` (the event as sent, so the field has the
    sender's name) when given, else in the canonical event."""
    check_time(event.occurred_at, field="timestamp" if raw is not None else None)
    stored: dict[str, Any] = {
        "messageId": event.message_id,
        "name": event.name,
        "identifiers": vars(event.identifiers),
        "properties": event.properties,
        "traits": event.traits,
        "context": event.context,
    }
    try:
        if "\\u0000" not in json_document(stored):
            return
    except (TypeError, ValueError):  # the encoder: a lone surrogate, a huge integer
        pass
    found = (unstorable(raw, first=API_FIELDS) if raw is not None else None) or unstorable(stored)
    path, why = found or ("", "is out of what PostgreSQL takes")
    raise MappingError(f"a value cannot be stored: it {why}", field=path or None)


# The events API's fields that are stored, in the order a problem is looked for.
API_FIELDS = (
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "messageId",
    "event",
    "name",
    "properties",
    "traits",
    "context",
)


def unstorable(value: Any, *, path: str = "", first: Iterable[str] = ()) -> tuple[str, str] | None:
    """The dotted path of the first value in `value` that cannot be stored, and why;
    None when there is none. An object's keys in `first` are looked at first."""
    if isinstance(value, str):
        why = _text_problem(value)
        return (path, why) if why else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, NOT_FINITE)
    if isinstance(value, int):
        if _SMALLEST_INT <= value <= _LARGEST_INT:
            return None
        return path, "is an integer beyond 64 bits"
    if isinstance(value, Mapping):
        keys = [k for k in first if k in value] + [k for k in value if k not in first]
        for key in keys:
            name = printable(key) if isinstance(key, str) else str(key)
            field = f"{path}.{name}" if path else name
            why = _text_problem(key) if isinstance(key, str) else None
            found = (field, f"has a key that {why}") if why else unstorable(value[key], path=field)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = unstorable(item, path=f"{path}.{index}" if path else str(index))
            if found:
                return found
    return None


def printable(value: str) -> str:
    """`value` as text PostgreSQL stores: a NUL and a lone surrogate as their escapes.
    For what names or reports a value (a field's path, a topic), not for the value."""
    if _text_problem(value) is None:
        return value
    return value.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")


def text_problem(value: str, *, field: str) -> str:
    """`value` if PostgreSQL can store it as text, else a MappingError naming `field`."""
    why = _text_problem(value)
    if why:
        raise MappingError(f"a value cannot be stored: it {why}", field=field)
    return value


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not text"
    return None
