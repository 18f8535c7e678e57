from __future__ import annotations

import time

import structlog

from service import db
from service.events import service
from service.rules import EVALUATE_TASK
from service.worker import NUDGER, get_celery

log = structlog.get_logger(__name__)

BATCH = 1000
TIME_BUDGET_S = 10.0


@get_celery().task(name=service.RESOLVE_TASK, acks_late=True, ignore_result=True)
def resolve_pending() -> int:
    """Resolve stored events onto profiles, a committed batch at a time, until none are
    left or the time budget is spent (the next nudge or sweep carries on). Workers
    running it at once take disjoint batches."""
    started, total = time.monotonic(), 0
    while time.monotonic() - started < TIME_BUDGET_S:
        with db.transaction() as session:
            done = service.resolve_pending(session, limit=BATCH)
        total += done
        if done:
            NUDGER.nudge(EVALUATE_TASK)  # rules evaluate what was just committed
        if done < BATCH:
            break
    if total:
        log.info("events_resolved", count=total, seconds=round(time.monotonic() - started, 3))
    return total
