"""The timers process: waiting rules decided at their due time, and due actions handed
to workers, within a fraction of a second. Due rows are claimed with `FOR UPDATE SKIP
LOCKED`, so several timers processes may run side by side."""

from __future__ import annotations

import threading
import time

import structlog
from sqlalchemy.exc import OperationalError

from service import db
from service.actions.tasks import send_ready
from service.rules import service as rules
from service.settings import get_settings

log = structlog.get_logger(__name__)

BATCH = 500


def run(*, stop: threading.Event) -> None:
    poll = get_settings().timers_poll_s
    log.info("timers_started", poll_s=poll)
    while not stop.is_set():
        started = time.monotonic()
        try:
            with db.transaction() as session:
                decided = rules.run_due(session, limit=BATCH)
            handed = send_ready()
        except OperationalError as exc:
            log.warning("timers_database_unavailable", error_type=type(exc).__name__)
            stop.wait(1.0)
            continue
        if decided or handed:
            log.info(
                "timers_tick",
                decided=decided,
                handed=handed,
                seconds=round(time.monotonic() - started, 3),
            )
        if decided < BATCH:  # a full batch means more are due: go on at once
            stop.wait(poll)
