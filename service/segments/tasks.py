"""Segment runs on the workers: the scheduled refresh, and advancing refreshes and
backfills a committed batch at a time."""

from __future__ import annotations

import time

import structlog
from sqlalchemy.orm import Session

from service import db
from service.rules.service import RUNTIME
from service.segments import service
from service.settings import get_settings
from service.worker import NUDGER, get_celery, task

log = structlog.get_logger(__name__)

# A run gives its worker process back this often, and queues itself behind whatever
# came meanwhile: with a budget of 10 s, a backfill and the rules evaluating its
# announcements held both processes of a worker, and resolving new events waited up to
# 10 s (membership p99 9.1 s during a backfill of 25,000 customers).
TIME_BUDGET_S = 0.5


@task(name="service.segments.tasks.refresh")
def refresh(session: Session) -> int | None:
    """Start a refresh of every active segment, unless one is running."""
    active = RUNTIME.active(session)
    if active.segments is None:
        return None
    run = service.start_refresh(session, segments=active.segments.segments)
    return run.id if run else None


@get_celery().task(name=service.ADVANCE_TASK, acks_late=True, ignore_result=True)
def advance() -> int:
    """Advance running refreshes and backfills, one committed batch per transaction,
    for up to TIME_BUDGET_S; then hand the rest to the next task. Returns the batches
    done (none when another worker holds the only run)."""
    started, batches = time.monotonic(), 0
    batch = get_settings().segment_batch_size
    while time.monotonic() - started < TIME_BUDGET_S:
        with db.transaction() as session:
            run = service.advance(
                session, engine=RUNTIME.engine, definitions=RUNTIME.active, batch=batch
            )
        if run is None:
            return batches
        batches += 1
    NUDGER.nudge(service.ADVANCE_TASK)  # the rest, behind what came meanwhile
    return batches
