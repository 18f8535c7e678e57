"""Request bodies: the API key is checked before a byte of the body is read, and the
body is capped per route while it streams.

A plain ASGI middleware in front of routing. FastAPI reads a JSON body whole, and
parses it, before any dependency runs: without this, a client with no key could make
the API read and parse any amount before its 401. Here a request that carries a body:

- on a route that takes an API key, gets 401 for a missing, unknown or revoked key
  before its body is read (the route checks the key and scope again, as always);
- gets 413 when its declared length is over the route's limit, before it is read, or
  as soon as what it streams goes over it;
- else reaches the route with its body, read in full, no larger than the limit.

Routes without a key in a header are the exceptions: webhooks are signed over the
body, and Segment's SDKs may send their write key in the body; both are capped all
the same. The storefront's decisions check the key in their one database read, so
only a missing key is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import anyio
import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import db, errors
from service.auth import service as auth
from service.decisions.fastpath import MAX_BODY as DECISION_MAX_BODY
from service.settings import get_settings

log = structlog.get_logger(__name__)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_TRACKING = frozenset(
    f"/v1/{kind}" for kind in ("batch", "track", "identify", "page", "screen", "group", "alias")
)


class Key(Enum):
    CHECKED = "a known, unrevoked API key, checked before the body is read"
    PRESENT = "an API key present; the route checks it (decisions)"
    IN_BODY = "none before the body (a signature or a write key in the body)"


@dataclass(frozen=True)
class BodyRule:
    limit: int
    key: Key


def body_rule(path: str) -> BodyRule:
    """What a body sent to `path` must satisfy."""
    settings = get_settings()
    if path.startswith("/v1/webhooks/"):
        return BodyRule(settings.webhook_max_bytes, Key.IN_BODY)
    if path in _TRACKING:
        return BodyRule(settings.events_max_batch_bytes, Key.IN_BODY)
    if path == "/v1/events":
        return BodyRule(settings.events_max_batch_bytes, Key.CHECKED)
    if path == "/v1/decisions":
        return BodyRule(DECISION_MAX_BODY, Key.PRESENT)
    return BodyRule(settings.http_max_body_bytes, Key.CHECKED)


class BodyGate:
    """The middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The storefront's hot path, looked up once (it is on every page view).
        self.decisions = body_rule("/v1/decisions")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                declared = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and not declared:  # no body: nothing to guard
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        rule = self.decisions if path == "/v1/decisions" else body_rule(path)
        refusal = None
        if rule.key is Key.PRESENT and _bearer(scope) is None:
            refusal = _key_missing(path)
        elif rule.key is Key.CHECKED:
            refusal = await _key_refusal(scope)
        if refusal is None and declared is not None and declared > rule.limit:
            refusal = _too_large(rule.limit, path)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        message = await receive()  # most bodies come whole, in one message
        if message["type"] == "http.request" and not message.get("more_body", False):
            if len(message.get("body", b"")) > rule.limit:
                await _too_large(rule.limit, path)(scope, receive, send)
            else:
                await self.app(scope, _replay(message, receive), send)
            return
        body = await _read(message, receive, rule.limit)
        if body is None:  # the client went away
            return
        if isinstance(body, int):
            await _too_large(rule.limit, path)(scope, receive, send)
            return
        whole = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay(whole, receive), send)


def _bearer(scope: Scope) -> str | None:
    """The key of `Authorization: Bearer <key>`, as the routes read it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _key_missing(path: str) -> Response:
    return errors.problem_response(
        401,
        "An API key is required: Authorization: Bearer <key>.",
        headers=_CHALLENGE,
        instance=path,
    )


async def _key_refusal(scope: Scope) -> Response | None:
    token = _bearer(scope)
    if token is None:
        return _key_missing(scope["path"])
    try:
        known = await anyio.to_thread.run_sync(_known, token)
    except Exception as exc:
        if not db.is_unavailable(exc):
            raise
        log.warning("database_unavailable", error_type=type(exc).__name__)
        return errors.database_unavailable(instance=scope["path"])
    if not known:
        return errors.problem_response(
            401, "The API key is unknown or revoked.", headers=_CHALLENGE, instance=scope["path"]
        )
    return None


def _known(token: str) -> bool:
    with db.transaction() as session:
        return auth.authenticate(session, key=token) is not None


def _too_large(limit: int, path: str) -> Response:
    return errors.problem_response(413, f"The body is larger than {limit} bytes.", instance=path)


async def _read(first: Message, receive: Receive, limit: int) -> bytes | int | None:
    """The whole body, from its `first` message on, if it fits in `limit`; else the
    size read when it went over (reading stops there); None if the client went away."""
    chunks: list[bytes] = []
    size = 0
    message = first
    while True:
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


def _replay(whole: Message, receive: Receive) -> Receive:
    """A receive that gives the body read here once, then the client's own messages
    (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return whole

    return replay
