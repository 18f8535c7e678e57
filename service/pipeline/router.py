"""Set-aside items over HTTP: list them, put one back after a fix."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from service.auth.dependencies import require
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import ProblemError, problem_responses
from service.pipeline import repository, service
from service.pipeline.models import SetAside, Stage

router = APIRouter(tags=["operations"])
Admin = Annotated[ApiKey, Depends(require(Scope.ADMIN))]
MAX_ID = 2**63 - 1


class SetAsideOut(BaseModel):
    id: int
    stage: Stage = Field(
        description="evaluate: an event the rules could not evaluate (item_id: the event); "
        "segments: a customer whose segments could not be recomputed; timers: a waiting "
        "rule that could not be decided (item_id: the firing)."
    )
    item_id: int | None
    customer_id: uuid.UUID | None
    error_type: str
    error: str
    created_at: datetime
    replayed_at: datetime | None = Field(description="Set when it was put back; open while null.")


class SetAsidePage(BaseModel):
    items: list[SetAsideOut]
    next_after: int | None = Field(description="Pass as `after` for the next page.")


def _view(row: SetAside) -> SetAsideOut:
    return SetAsideOut.model_validate(row, from_attributes=True)


@router.get(
    "/v1/set-aside", response_model=SetAsidePage, responses=problem_responses(401, 403, 422, 500)
)
def list_set_aside(
    session: DbSession,
    _: Admin,
    stage: Stage | None = None,
    include_replayed: bool = False,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="The last id of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SetAsidePage:
    """Items whose processing raised and that were set aside so the rest went on,
    oldest first; open ones only unless `include_replayed` (scope `admin`)."""
    rows = repository.listing(
        session, stage=stage, open_only=not include_replayed, after=after, limit=limit
    )
    return SetAsidePage(
        items=[_view(r) for r in rows], next_after=rows[-1].id if len(rows) == limit else None
    )


@router.post(
    "/v1/set-aside/{row_id}/replay",
    response_model=SetAsideOut,
    responses=problem_responses(401, 403, 404, 409, 422, 500),
)
def replay_set_aside(
    row_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: DbSession, _: Admin
) -> SetAsideOut:
    """Put a set-aside item back in its stage's queue, once the cause is fixed; if it
    fails again it is set aside again, as a new item (scope `admin`)."""
    try:
        row = service.replay(session, row_id=row_id)
    except service.NotReplayable as exc:
        raise ProblemError(409, str(exc)) from exc
    if row is None:
        raise ProblemError(404, f"No set-aside item {row_id}.")
    return _view(row)
