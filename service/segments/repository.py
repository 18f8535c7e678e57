"""SQL for segments: open and closed membership periods, the events that announce
them, the window counts segments read, the runs that walk every customer, and the
marketer's views (sizes, members, history)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, text
from sqlalchemy.orm import Session

from service.db import advisory_xact_locks, json_document
from service.segments.models import OPEN, SegmentMembership, SegmentRun

# --- membership ------------------------------------------------------------------------------


def open_memberships(
    session: Session, customers: Sequence[uuid.UUID], segments: Iterable[str]
) -> dict[uuid.UUID, dict[str, tuple[int, str]]]:
    """customer → {segment: (open period id, added_by)}, for these segments. (A join on
    the ids as one array, and the segments filtered here: with statistics taken while the
    table was empty, 1,000 ids as a list with a segment filter were planned as a scan of
    every open period testing each against the list, 75-150 ms a batch at 51,000.)"""
    wanted = set(segments)
    rows = session.execute(
        text(
            "SELECT m.customer_id, m.segment, m.id, m.added_by "
            "FROM unnest(CAST(:ids AS uuid[])) AS c(id) "
            "JOIN segment_memberships AS m ON m.customer_id = c.id AND m.exited_at IS NULL"
        ),
        {"ids": [str(c) for c in customers]},
    )
    found: dict[uuid.UUID, dict[str, tuple[int, str]]] = {}
    for customer, segment, period, added_by in rows:
        if segment in wanted:
            found.setdefault(customer, {})[segment] = (period, added_by)
    return found


def enter(session: Session, rows: Sequence[dict[str, Any]], *, at: datetime) -> list[Row[Any]]:
    """Open a period for each row (customer_id, segment, added_by, version, version_id)
    that has none open; returns the periods opened (id, customer_id, segment, version)."""
    if not rows:
        return []
    return list(
        session.execute(
            text(
                "INSERT INTO segment_memberships (customer_id, segment, added_by, version, "
                "version_id, entered_at) SELECT customer_id, segment, added_by, version, "
                "version_id, :at FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r("
                "customer_id uuid, segment text, added_by text, version int, version_id bigint) "
                "ON CONFLICT (customer_id, segment) WHERE exited_at IS NULL DO NOTHING "
                "RETURNING id, customer_id, segment, version"
            ),
            {"rows": json_document(rows), "at": at},
        )
    )


def leave(session: Session, periods: Sequence[int], *, at: datetime, by: str) -> list[Row[Any]]:
    """Close these periods if still open; returns those closed."""
    if not periods:
        return []
    return list(
        session.execute(
            text(
                "UPDATE segment_memberships SET exited_at = :at, exited_by = :by "
                "WHERE id = ANY(CAST(:ids AS bigint[])) AND exited_at IS NULL "
                "AND entered_at <= :at "  # never before it began (a batch with an older clock)
                "RETURNING id, customer_id, segment, version"
            ),
            {"ids": list(periods), "at": at, "by": by},
        )
    )


def open_period(session: Session, *, customer: uuid.UUID, segment: str) -> int | None:
    return session.scalar(
        select(SegmentMembership.id).where(
            SegmentMembership.customer_id == customer, SegmentMembership.segment == segment, OPEN
        )
    )


def add_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Events on profiles, already resolved (source, message_id, customer_id, name,
    occurred_at, properties): rules evaluate them next."""
    if rows:
        session.execute(
            text(
                "INSERT INTO events (source, message_id, customer_id, type, name, occurred_at, "
                "properties, context) SELECT source, message_id, customer_id, 'track', name, "
                "occurred_at, properties, '{}' FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS r(source text, message_id text, customer_id uuid, name text, "
                "occurred_at timestamptz, properties jsonb) "
                "ON CONFLICT (source, message_id) DO NOTHING"
            ),
            {"rows": json_document(rows)},
        )


# --- what segments read ----------------------------------------------------------------------


def analyze(session: Session) -> None:
    session.execute(text("ANALYZE segment_memberships"))


# --- runs ------------------------------------------------------------------------------------


def add_run(session: Session, *, kind: str, segments: Sequence[str], total: int) -> SegmentRun:
    run = SegmentRun(kind=kind, segments=list(segments), status="running", total=total)
    session.add(run)
    session.flush()
    return run


def lock_runs(session: Session) -> None:
    """Serialise starting runs (one refresh at a time; a backfill folds in the last)."""
    advisory_xact_locks(session, ["segment_runs"])


def running(
    session: Session, *, kind: str | None = None, for_update: bool = False
) -> list[SegmentRun]:
    statement = select(SegmentRun).where(SegmentRun.status == "running").order_by(SegmentRun.id)
    if kind is not None:
        statement = statement.where(SegmentRun.kind == kind)
    if for_update:  # waits for a worker's batch, then sees the row as it committed it
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(statement))


def claim_run(session: Session) -> SegmentRun | None:
    """The oldest running run no other worker is advancing, locked."""
    return session.scalars(
        select(SegmentRun)
        .where(SegmentRun.status == "running")
        .order_by(SegmentRun.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()


def get_run(session: Session, run_id: int) -> SegmentRun | None:
    return session.get(SegmentRun, run_id)


def recent_runs(session: Session, *, limit: int) -> list[SegmentRun]:
    return list(session.scalars(select(SegmentRun).order_by(SegmentRun.id.desc()).limit(limit)))


# --- the marketer's views --------------------------------------------------------------------


def sizes(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(SegmentMembership.segment, func.count())
        .where(OPEN)
        .group_by(SegmentMembership.segment)
    )
    return {segment: count for segment, count in rows}


def members(
    session: Session, segment: str, *, after: uuid.UUID | None, limit: int
) -> list[SegmentMembership]:
    statement = (
        select(SegmentMembership)
        .where(SegmentMembership.segment == segment, OPEN)
        .order_by(SegmentMembership.customer_id)
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(SegmentMembership.customer_id > after)
    return list(session.scalars(statement))


def open_segments(session: Session, customer: uuid.UUID) -> list[str]:
    return list(
        session.scalars(
            select(SegmentMembership.segment)
            .where(SegmentMembership.customer_id == customer, OPEN)
            .order_by(SegmentMembership.segment)
        )
    )


def periods_of(session: Session, customer: uuid.UUID, *, limit: int) -> list[SegmentMembership]:
    return list(
        session.scalars(
            select(SegmentMembership)
            .where(SegmentMembership.customer_id == customer)
            .order_by(SegmentMembership.entered_at.desc(), SegmentMembership.id.desc())
            .limit(limit)
        )
    )


def size_history(
    session: Session, segment: str, *, start: datetime, step: str, points: int
) -> list[Row[Any]]:
    """The segment's size at each of `points` times from `start`, `step` apart (an
    interval such as '1 day'), with how many entered and left in the step before each.
    Worked back from the current size through the periods that changed since then, so
    it reads the recent changes, not every member."""
    return list(
        session.execute(
            text(
                "WITH t AS (SELECT generate_series(CAST(:start AS timestamptz),"
                "    CAST(:start AS timestamptz) + CAST(:step AS interval) * (:points - 1),"
                "    CAST(:step AS interval)) AS at),"
                " n AS (SELECT count(*) AS open FROM segment_memberships"
                "    WHERE segment = :segment AND exited_at IS NULL),"
                " p AS (SELECT entered_at, exited_at FROM segment_memberships"
                "    WHERE segment = :segment"
                "    AND (entered_at > CAST(:start AS timestamptz) - CAST(:step AS interval)"
                "      OR exited_at > CAST(:start AS timestamptz) - CAST(:step AS interval))) "
                "SELECT t.at,"
                " n.open"
                " - (SELECT count(*) FROM p WHERE p.entered_at > t.at AND p.exited_at IS NULL)"
                " + (SELECT count(*) FROM p WHERE p.entered_at <= t.at AND p.exited_at > t.at)"
                "   AS size,"
                " (SELECT count(*) FROM p WHERE p.entered_at <= t.at"
                "   AND p.entered_at > t.at - CAST(:step AS interval)) AS entered,"
                " (SELECT count(*) FROM p WHERE p.exited_at <= t.at"
                "   AND p.exited_at > t.at - CAST(:step AS interval)) AS exited "
                "FROM t CROSS JOIN n ORDER BY t.at"
            ),
            {"segment": segment, "start": start, "step": step, "points": points},
        )
    )
