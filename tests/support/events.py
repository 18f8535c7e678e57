"""Events as the storefront sends them."""

from __future__ import annotations

import uuid


def track(event: str, *, anon: str | None = None, user: str | None = None, **props) -> dict:
    body: dict = {
        "type": "track",
        "event": event,
        "messageId": uuid.uuid4().hex,
        "timestamp": props.pop("timestamp", "2026-11-20T10:00:00Z"),
        "properties": props,
    }
    if anon:
        body["anonymousId"] = anon
    if user:
        body["userId"] = user
    return body
