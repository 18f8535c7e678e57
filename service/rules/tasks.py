from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from service import db
from service.rules import EVALUATE_TASK, service
from service.worker import get_celery

log = structlog.get_logger(__name__)

BATCH = 500
TIME_BUDGET_S = 10.0


def _drain(step: Callable[..., int], name: str) -> int:
    """Run `step` a committed batch at a time until the work is done or the time
    budget is spent (the next nudge or sweep carries on)."""
    started, total = time.monotonic(), 0
    while time.monotonic() - started < TIME_BUDGET_S:
        with db.transaction() as session:
            done = step(session, limit=BATCH)
        total += done
        if done < BATCH:
            break
    if total:
        log.info(name, count=total, seconds=round(time.monotonic() - started, 3))
    return total


@get_celery().task(name=EVALUATE_TASK, acks_late=True, ignore_result=True)
def evaluate_pending() -> int:
    """Evaluate resolved events against the active rules (the events outbox)."""
    return _drain(service.evaluate_pending, "events_evaluated")
