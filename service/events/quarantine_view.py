"""The quarantine as the API shows it: contact data masked, pages bounded in bytes.

Quarantined payloads are raw inputs, with whatever emails and phone numbers they
carried. The API shows them masked as profiles are (`a***@example.com`, `***12`): an
email anywhere in a string, and any value under a key naming an email or a phone.
(The stored payload is untouched: a replay maps the input as it came.)

A page holds at most `limit` items and at most QUARANTINE_PAGE_MAX_BYTES of JSON. An
item whose payload alone would not fit on a page is listed without it
(`payload_omitted`); `GET /v1/quarantine/{id}` shows it whole, masked the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from service.events.models import QuarantinedEvent
from service.events.schemas import QuarantineItem

# An email address around each "@" of a text: a local part before it, a domain with a
# dot after it, each within an address's own limits (so a long text costs no more than
# its "@"s).
_NOT_IN_ADDRESS = "\\s@\"'<>(),;:\\[\\]"
_LOCAL = re.compile(f"[^{_NOT_IN_ADDRESS}]{{1,64}}\\Z")
_DOMAIN = re.compile(f"[^{_NOT_IN_ADDRESS}]{{1,253}}\\.[A-Za-z]{{2,63}}(?![A-Za-z])")
_PHONE_KEYS = ("phone", "mobile", "msisdn")


def mask(kind: str, value: str) -> str:
    """A contact value as the API shows it, here and on profiles (`a***@example.com`,
    `***12`)."""
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"***{value[-2:]}"


def masked(value: Any, key: str = "") -> Any:
    """`value` with its contact data masked; `key` is the name it was found under."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    name = key.lower()
    if isinstance(value, str | int) and not isinstance(value, bool):
        if any(part in name for part in _PHONE_KEYS):
            return mask("phone", str(value))
        if "email" in name and isinstance(value, str):
            return mask("email", value) if "@" in value else mask("other", value)
    if isinstance(value, str) and "@" in value:
        return _masked_emails(value)
    return value


def _masked_emails(text: str) -> str:
    parts: list[str] = []
    done = 0
    at = text.find("@")
    while at != -1:
        local = _LOCAL.search(text, max(done, at - 64), at)
        domain = _DOMAIN.match(text, at + 1, at + 330)
        if local and domain:
            parts += [text[done : local.start()], mask("email", text[local.start() : domain.end()])]
            done = domain.end()
        at = text.find("@", max(at + 1, done))
    parts.append(text[done:])
    return "".join(parts)


def item_view(row: QuarantinedEvent, payload: Any, *, omitted: bool = False) -> dict[str, Any]:
    """One item as JSON-ready data, masked."""
    item = QuarantineItem(
        id=row.id,
        source=row.source,
        topic=row.topic,
        reason=masked(row.reason),
        field=row.field,
        status=row.status,
        received_at=row.received_at,
        replayed_at=row.replayed_at,
        payload=None if omitted else masked(payload),
        payload_omitted=omitted,
    )
    return item.model_dump(mode="json")


def dumps(view: dict[str, Any]) -> bytes:
    """JSON for an item; a payload may hold an integer beyond 64 bits, which JSONB keeps
    and orjson does not write."""
    try:
        return orjson.dumps(view)
    except orjson.JSONEncodeError:
        return json.dumps(view, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Page:
    body: bytes  # the JSON array
    next_after: int | None  # the cursor of the next page; None at the end


# An item's fields but its payload, as JSON, stay well under this.
_ITEM_OVERHEAD = 1024


def build_page(
    rows: Sequence[tuple[QuarantinedEvent, int]],
    payloads: Callable[[Sequence[int]], dict[int, Any]],
    *,
    limit: int,
    max_bytes: int,
) -> Page:
    """A page from `rows` (in id order, with each payload's stored size in bytes; up to
    `limit` + 1 of them, the extra one telling whether more follow). `payloads` reads
    the payloads of the items chosen, so no more than about a page is ever read."""
    chosen: list[tuple[QuarantinedEvent, int]] = []
    estimate = 2
    for row, size in rows[:limit]:
        estimate += size + _ITEM_OVERHEAD
        if chosen and estimate > max_bytes:
            break
        chosen.append((row, size))
    stored = payloads([row.id for row, size in chosen if size <= max_bytes])
    parts: list[bytes] = []
    total = 2  # the brackets
    for row, size in chosen:
        too_large = size > max_bytes
        part = dumps(item_view(row, stored.get(row.id), omitted=too_large))
        if total + len(part) + 1 > max_bytes:
            if parts:
                break
            part = dumps(item_view(row, None, omitted=True))
        parts.append(part)
        total += len(part) + 1
    more = len(parts) < len(rows)
    last = chosen[len(parts) - 1][0].id if parts else None
    return Page(b"[" + b",".join(parts) + b"]", last if more else None)
