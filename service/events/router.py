"""The events API (Segment spec) and the quarantine."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from service.auth.dependencies import require
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import FieldError, ProblemError, problem_response, problem_responses
from service.events import api_events, quarantine, quarantine_view, repository
from service.events.body import json_response, limited_body, parse_json
from service.events.schemas import (
    EventsResponse,
    QuarantineItem,
    ReplayResult,
)
from service.params import id_cursor, row_id
from service.settings import get_settings
from service.vocabulary import IntakeStatus

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=EventsResponse,
    responses=problem_responses(401, 403, 413, 422, 500),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/EventsBatch"},
                            {"$ref": "#/components/schemas/ApiEvent"},
                        ]
                    }
                }
            },
        }
    },
)
def post_events(
    session: DbSession,
    _: Annotated[ApiKey, Depends(require(Scope.INGEST))],
    body: Annotated[bytes, Depends(limited_body(lambda: get_settings().events_max_batch_bytes))],
) -> Response:
    """Track, identify and page events: one event, or `{"batch": [...]}` of up to 500
    (500 KB; 32 KB an event). Each event's result is reported: `accepted`, `duplicate`
    (its `messageId` was seen before) or `rejected` with the reason and field; a
    rejected event is quarantined and never rejects the rest. One event sent alone
    and rejected is a 422 problem naming the field, carrying the same results."""
    payload = parse_json(body)
    raw = _events_of(payload)
    results = api_events.ingest_api_events(session, raw_events=raw)
    count = {s: sum(r.status == s for r in results) for s in IntakeStatus}
    answer = EventsResponse(
        accepted=count[IntakeStatus.ACCEPTED],
        duplicates=count[IntakeStatus.DUPLICATE],
        rejected=count[IntakeStatus.REJECTED],
        results=results,
    )
    if not _is_batch(payload) and results[0].status == IntakeStatus.REJECTED:
        return _rejected(answer)
    return json_response(answer)


def _rejected(answer: EventsResponse) -> Response:
    """The problem for one event sent alone and rejected. Returned, not raised: the
    event is in the quarantine, as a rejected event of a batch is, once this commits."""
    [result] = answer.results
    reason = result.reason or "rejected"
    return problem_response(
        422,
        f"The event was rejected: {reason}",
        errors=[FieldError(field=result.field, message=reason)] if result.field else None,
        extra=answer.model_dump(mode="json"),
        instance="/v1/events",
    )


def _is_batch(payload: Any) -> bool:
    return isinstance(payload, dict) and "batch" in payload


def _events_of(payload: Any) -> list[Any]:
    """`{"batch": [...]}` or one event object."""
    if _is_batch(payload):
        batch = payload["batch"]
        if not isinstance(batch, list) or not batch:
            raise ProblemError(
                422,
                "`batch` must be a non-empty list of events.",
                errors=[FieldError(field="body.batch", message="not a list")],
            )
        limit = get_settings().events_max_batch
        if len(batch) > limit:
            raise ProblemError(
                422,
                f"A batch holds at most {limit} events.",
                errors=[FieldError(field="body.batch", message="too many")],
            )
        return batch
    if isinstance(payload, dict):
        return [payload]
    raise ProblemError(
        422,
        'The body must be an event object or {"batch": [...]}.',
        errors=[FieldError(field="body", message="not an object")],
    )


@router.get(
    "/quarantine",
    response_model=list[QuarantineItem],
    responses={
        200: {
            "headers": {
                "Link": {
                    "description": 'The next page, `<…?after=N>; rel="next"`; absent on '
                    "the last page.",
                    "schema": {"type": "string"},
                }
            }
        },
        **problem_responses(401, 403, 422, 500),
    },
    tags=["quarantine"],
)
def list_quarantine(
    request: Request,
    session: DbSession,
    _: Annotated[ApiKey, Depends(require(Scope.ADMIN))],
    status: Literal["held", "replayed"] | None = "held",
    after: Annotated[int | None, id_cursor("Return items with a larger id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Inputs that could not be mapped or validated, with the reason, oldest first
    (scope `admin`). Emails and phone numbers are masked. A page holds up to `limit`
    items and up to QUARANTINE_PAGE_MAX_BYTES (256 KB) of JSON; the `Link` header
    points to the next page until the last."""
    rows = repository.quarantine_page(session, status=status, after_id=after, limit=limit + 1)
    page = quarantine_view.build_page(
        rows,
        lambda ids: repository.quarantine_payloads(session, ids),
        limit=limit,
        max_bytes=get_settings().quarantine_page_max_bytes,
    )
    headers = {}
    if page.next_after is not None:
        following = request.url.include_query_params(after=page.next_after)
        headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return Response(page.body, media_type="application/json", headers=headers)


@router.get(
    "/quarantine/{item_id}",
    response_model=QuarantineItem,
    responses=problem_responses(401, 403, 404, 422, 500),
    tags=["quarantine"],
)
def get_quarantined(
    item_id: Annotated[int, row_id()],
    session: DbSession,
    _: Annotated[ApiKey, Depends(require(Scope.ADMIN))],
) -> Response:
    """One quarantined item with its whole payload, emails and phone numbers masked
    (scope `admin`). A replay maps the input as it was received."""
    item = repository.get_quarantined(session, item_id)
    if item is None:
        raise ProblemError(404, f"No quarantined item {item_id}.")
    view = quarantine_view.item_view(item, item.payload)
    return Response(quarantine_view.dumps(view), media_type="application/json")


@router.post(
    "/quarantine/{item_id}/replay",
    response_model=ReplayResult,
    responses=problem_responses(401, 403, 404, 422, 500),
    tags=["quarantine"],
)
def replay_quarantined(
    item_id: Annotated[int, row_id()],
    session: DbSession,
    _: Annotated[ApiKey, Depends(require(Scope.ADMIN))],
) -> ReplayResult:
    """Map a quarantined item again (after a fix) and store its events; 422 with the
    reason if it still fails (the item stays held)."""
    try:
        outcome = quarantine.replay(session, item_id=item_id)
    except quarantine.ReplayFailed as exc:
        errors = [FieldError(field=exc.field, message=exc.reason)] if exc.field else None
        raise ProblemError(422, f"Still cannot be mapped: {exc.reason}", errors=errors) from exc
    if outcome is None:
        raise ProblemError(404, f"No quarantined item {item_id}.")
    status, events = outcome
    return ReplayResult(id=item_id, status=status, events=events)
