"""Segments over HTTP (scope `marketer`): the segments with their size, members, size
history and runs, and a customer's segments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.orm import Session

from service.auth.dependencies import require
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import ProblemError, problem_responses
from service.language.schema import IDENTIFIER
from service.params import row_id
from service.profiles import service as profiles
from service.ruleset.runtime import RUNTIME
from service.segments import repository, service
from service.segments.models import SegmentRun
from service.segments.schemas import (
    HistoryOut,
    MemberOut,
    MembersPage,
    PeriodOut,
    ProfileSegmentsOut,
    RunOut,
    SegmentOut,
    SegmentsOut,
    SizePoint,
)

router = APIRouter(tags=["segments"])
Marketer = Annotated[ApiKey, Depends(require(Scope.MARKETER))]
Name = Annotated[str, Path(pattern=IDENTIFIER, description="A segment id, e.g. `high_value`")]


def run_view(run: SegmentRun) -> RunOut:
    return RunOut(
        id=run.id,
        kind=run.kind,
        segments=run.segments,
        status=run.status,
        total=run.total,
        done=run.done,
        progress=round(min(1.0, run.done / run.total), 4) if run.total else 1.0,
        entered=run.entered,
        exited=run.exited,
        note=run.note,
        created_at=run.created_at,
        finished_at=run.finished_at,
    )


def _segments(session: Session) -> list[SegmentOut]:
    active = RUNTIME.active(session)
    defined = active.segments.segments if active.segments else {}
    sizes = repository.sizes(session)
    backfills = repository.running(session, kind="backfill")
    views = []
    for name in sorted(set(defined) | set(sizes)):
        item = defined.get(name)
        run = next((r for r in backfills if name in r.segments), None)
        views.append(
            SegmentOut(
                id=name,
                computed=item is not None,
                description=item.definition.description.strip() if item else "",
                version=item.definition.version if item else None,
                version_id=active.version_ids.get(item.version_name) if item else None,
                file=item.file if item else None,
                size=sizes.get(name, 0),
                backfill=run_view(run) if run else None,
            )
        )
    return views


@router.get("/v1/segments", response_model=SegmentsOut, responses=problem_responses(401, 403, 500))
def list_segments(session: DbSession, _: Marketer) -> SegmentsOut:
    """Every segment: those defined in `rules/segments/` and those rules' actions fill,
    with their current size, and the progress of backfills and of the last refresh."""
    refresh = next(
        (r for r in repository.recent_runs(session, limit=20) if r.kind == "refresh"), None
    )
    return SegmentsOut(items=_segments(session), refresh=run_view(refresh) if refresh else None)


@router.get(
    "/v1/segments/{segment}",
    response_model=SegmentOut,
    responses=problem_responses(401, 403, 404, 422, 500),
)
def get_segment(segment: Name, session: DbSession, _: Marketer) -> SegmentOut:
    found = next((s for s in _segments(session) if s.id == segment), None)
    if found is None:
        raise ProblemError(404, f"No segment {segment!r}: no definition and no members.")
    return found


@router.get(
    "/v1/segments/{segment}/members",
    response_model=MembersPage,
    responses=problem_responses(401, 403, 422, 500),
)
def segment_members(
    segment: Name,
    session: DbSession,
    _: Marketer,
    after: Annotated[
        uuid.UUID | None, Query(description="`next_after` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MembersPage:
    """The customers in the segment now, in customer id order."""
    rows = repository.members(session, segment, after=after, limit=limit)
    return MembersPage(
        items=[
            MemberOut(
                customer_id=r.customer_id,
                entered_at=r.entered_at,
                added_by=r.added_by,
                version=r.version,
            )
            for r in rows
        ],
        next_after=rows[-1].customer_id if len(rows) == limit else None,
    )


@router.get(
    "/v1/segments/{segment}/history",
    response_model=HistoryOut,
    responses=problem_responses(401, 403, 422, 500),
)
def segment_history(
    segment: Name,
    session: DbSession,
    _: Marketer,
    step: Literal["hour", "day"] = "day",
    points: Annotated[int, Query(ge=2, le=366)] = 30,
) -> HistoryOut:
    """The segment's size at the end of each step, up to now, with who entered and left
    in each step (from the membership periods)."""
    span = timedelta(hours=1) if step == "hour" else timedelta(days=1)
    start = datetime.now(UTC) - span * (points - 1)
    rows = repository.size_history(session, segment, start=start, step=f"1 {step}", points=points)
    return HistoryOut(
        segment=segment,
        step=step,
        points=[SizePoint(at=r.at, size=r.size, entered=r.entered, exited=r.exited) for r in rows],
    )


@router.get(
    "/v1/profiles/{ref}/segments",
    response_model=ProfileSegmentsOut,
    responses=problem_responses(401, 403, 404, 422, 500),
)
def profile_segments(
    ref: Annotated[str, Path(description="A profile id, or an identity as `kind:value`")],
    session: DbSession,
    _: Marketer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ProfileSegmentsOut:
    """The segments a customer is in now, and their membership periods."""
    customer = profiles.find(session, ref=ref)
    if customer is None:
        raise ProblemError(404, "No profile matches this id or identity.")
    periods = repository.periods_of(session, customer.id, limit=limit)
    return ProfileSegmentsOut(
        customer_id=customer.id,
        segments=repository.open_segments(session, customer.id),
        periods=[
            PeriodOut(
                segment=p.segment,
                entered_at=p.entered_at,
                exited_at=p.exited_at,
                added_by=p.added_by,
                exited_by=p.exited_by,
                version=p.version,
            )
            for p in periods
        ],
    )


@router.get(
    "/v1/segment-runs", response_model=list[RunOut], responses=problem_responses(401, 403, 500)
)
def list_runs(
    session: DbSession, _: Marketer, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[RunOut]:
    """Refreshes and backfills, newest first, with their progress."""
    return [run_view(r) for r in repository.recent_runs(session, limit=limit)]


@router.get(
    "/v1/segment-runs/{run_id}",
    response_model=RunOut,
    responses=problem_responses(401, 403, 404, 500),
)
def get_run(run_id: Annotated[int, row_id()], session: DbSession, _: Marketer) -> RunOut:
    run = repository.get_run(session, run_id)
    if run is None:
        raise ProblemError(404, f"No segment run {run_id}.")
    return run_view(run)


@router.post(
    "/v1/segment-runs",
    response_model=RunOut,
    status_code=202,
    responses=problem_responses(401, 403, 409, 500),
)
def start_refresh(session: DbSession, _: Marketer) -> RunOut:
    """Recompute every active segment for every customer now (as the scheduled refresh
    does); 409 while a refresh is running."""
    active = RUNTIME.active(session)
    run = service.start_refresh(
        session, segments=active.segments.segments if active.segments else []
    )
    if run is None:
        raise ProblemError(409, "A refresh is running, or no segment is defined.")
    return run_view(run)
