from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from service.health.models import WorkerHeartbeat


def ping(session: Session, *, timeout_ms: int) -> None:
    session.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
    session.execute(text("SELECT 1"))


def read_broker_tables(session: Session, *, tables: Sequence[Table], timeout_ms: int) -> None:
    """Read a row (if any) of each of kombu's tables, under a statement timeout."""
    session.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
    for table in tables:
        session.execute(select(literal(1)).select_from(table).limit(1))


def record_heartbeat(session: Session, *, hostname: str, pid: int) -> None:
    stmt = insert(WorkerHeartbeat).values(hostname=hostname, pid=pid, seen_at=func.now())
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[WorkerHeartbeat.hostname],
            set_={"pid": stmt.excluded.pid, "seen_at": stmt.excluded.seen_at},
        )
    )


def workers_seen_since(session: Session, *, since: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(WorkerHeartbeat)
            .where(WorkerHeartbeat.seen_at >= since)
        )
        or 0
    )
