"""Segment's HTTP Tracking API, so a storefront's Segment SDKs send here unchanged.

The SDKs authenticate with a write key: analytics.js, analytics-node and
analytics-python send it as `writeKey` in the body; Segment's HTTP API documents it as
the user name of HTTP Basic auth. Here a write key is an API key with the `ingest`
scope. The SDKs gzip bodies when asked to, and retry any answer but 2xx and 4xx, so
an event that is malformed on its own is quarantined and acknowledged with the rest:
retrying would not fix it. Errors are
problem documents that also carry the `code` and `message` members the SDKs read.

Accepted events take exactly the path of `POST /v1/events`.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from service.auth import service as auth
from service.auth.service import Scope
from service.db import DbSession
from service.errors import FieldError, ProblemError, problem_responses
from service.events import api_events
from service.events.body import json_response, limited_body, parse_json
from service.settings import get_settings
from service.vocabulary import EventType, IntakeStatus

router = APIRouter(prefix="/v1", tags=["tracking"])
_RESPONSES = problem_responses(400, 401, 403, 413, 500)
_read_body = limited_body(lambda: get_settings().events_max_batch_bytes)


async def _body(request: Request) -> bytes:
    try:
        return await _read_body(request)
    except ProblemError as exc:
        raise _problem(exc.status, "invalid_request", exc.detail) from exc


RawBody = Annotated[bytes, Depends(_body)]


class TrackingAck(BaseModel):
    """What the SDKs expect (`success`), with what became of the events."""

    success: bool = True
    accepted: int
    duplicates: int
    rejected: int


def _problem(
    status: int, code: str, detail: str, *, errors: list[FieldError] | None = None
) -> ProblemError:
    headers = {"WWW-Authenticate": 'Basic realm="write key"'} if status == 401 else None
    return ProblemError(
        status, detail, headers=headers, errors=errors, extra={"code": code, "message": detail}
    )


def _decoded(request: Request, body: bytes) -> bytes:
    """The body, gunzipped if it came gzipped, within the batch size limit."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding != "gzip":
        raise _problem(
            400, "invalid_request", f"Content-Encoding '{encoding[:32]}' is not supported."
        )
    limit = get_settings().events_max_batch_bytes
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)  # a bounded read: no gzip bomb
    except zlib.error as exc:
        raise _problem(400, "invalid_request", "The body is not valid gzip.") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise _problem(413, "invalid_request", f"The body is larger than {limit} bytes unzipped.")
    if not inflater.eof:
        raise _problem(400, "invalid_request", "The gzip body is truncated.")
    return data


def _json(data: bytes) -> Any:
    try:
        return parse_json(data)
    except ProblemError as exc:
        raise _problem(400, "invalid_request", exc.detail, errors=exc.errors) from exc


def _write_key(request: Request, payload: Any) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user.partition(":")[0] or None
    if scheme.lower() == "bearer":
        return value.strip() or None
    key = payload.get("writeKey") if isinstance(payload, dict) else None
    return key if isinstance(key, str) and key else None


def _authenticate(session: DbSession, request: Request, payload: Any) -> None:
    key = _write_key(request, payload)
    if key is None:
        raise _problem(
            401, "unauthorized", "A write key is required: HTTP Basic user name, or `writeKey`."
        )
    record = auth.authenticate(session, key=key)
    if record is None:
        raise _problem(401, "unauthorized", "The write key is unknown or revoked.")
    if not auth.allows(record, Scope.INGEST):
        raise _problem(403, "forbidden", "This write key lacks the 'ingest' scope.")


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def corrected(event: dict[str, Any], *, sent_at: Any, received_at: datetime) -> dict[str, Any]:
    """Segment's clock-skew correction: a device's clock may be wrong, but the time
    between its `timestamp` and its `sentAt` is right, so the event happened that long
    before the service received it. The device's value stays on the event as received
    (`originalTimestamp`), which is what the quarantine keeps of a rejected event."""
    original = _timestamp(event.get("timestamp"))
    sent = _timestamp(event.get("sentAt", sent_at))
    if original is None or sent is None:
        return event
    try:
        fixed = received_at - (sent - original)
    except OverflowError:
        return event  # validation rejects the timestamp on its own
    return event | {"timestamp": fixed.isoformat(), "originalTimestamp": event["timestamp"]}


def _ingest(
    session: DbSession,
    request: Request,
    body: bytes,
    *,
    kind: EventType | None,
) -> Response:
    received_at = datetime.now(UTC)
    data = _decoded(request, body)
    if request.headers.get("authorization"):
        _authenticate(session, request, None)  # before reading a body it may not send
        payload = _json(data)
    else:
        payload = _json(data)
        _authenticate(session, request, payload)
    if not isinstance(payload, dict):
        raise _problem(400, "invalid_request", "The body must be a JSON object.")
    if kind is None:
        events = payload.get("batch")
        if not isinstance(events, list):
            raise _problem(400, "invalid_request", "`batch` must be a list of events.")
        context = payload.get("context")
        shared: dict[str, Any] = context if isinstance(context, dict) else {}
    else:
        events, shared = [payload | {"type": kind}], {}
    sent_at = payload.get("sentAt")
    raw_events = [
        _prepared(event, shared=shared, sent_at=sent_at, received_at=received_at)
        for event in events
    ]
    results = api_events.ingest_api_events(session, raw_events=raw_events)
    return json_response(
        TrackingAck(
            accepted=sum(r.status == IntakeStatus.ACCEPTED for r in results),
            duplicates=sum(r.status == IntakeStatus.DUPLICATE for r in results),
            rejected=sum(r.status == IntakeStatus.REJECTED for r in results),
        )
    )


def _prepared(event: Any, *, shared: dict[str, Any], sent_at: Any, received_at: datetime) -> Any:
    if not isinstance(event, dict):
        return event  # rejected and quarantined as it is
    event = {k: v for k, v in event.items() if k != "writeKey"}
    if shared:
        own = event.get("context")
        event["context"] = shared | own if isinstance(own, dict) else shared
    return corrected(event, sent_at=sent_at, received_at=received_at)


@router.post("/batch", response_model=TrackingAck, responses=_RESPONSES)
def batch(session: DbSession, request: Request, body: RawBody) -> Response:
    """Segment's batch call: `{"batch": [...], "sentAt", "context", "writeKey"}`, as the
    SDKs send it (500 KB, 32 KB an event; gzip allowed). 200 `{"success": true}`
    unless the request itself is malformed; events that are not valid are
    quarantined, never retried."""
    return _ingest(session, request, body, kind=None)


def _single(kind: EventType) -> Any:
    def endpoint(session: DbSession, request: Request, body: RawBody) -> Response:
        return _ingest(session, request, body, kind=kind)

    endpoint.__name__ = kind.value
    endpoint.__doc__ = f"Segment's `{kind}` call: one event, as in a batch."
    return endpoint


for _kind in EventType:
    router.add_api_route(
        f"/{_kind}",
        _single(_kind),
        methods=["POST"],
        response_model=TrackingAck,
        responses=_RESPONSES,
    )
