"""The timers process: work that comes due at a moment (waiting rules, scheduled
actions), run within a fraction of a second of its time. What comes due is registered
in `service.flow.DUE`; rows are claimed with `FOR UPDATE SKIP LOCKED`, so several
timers processes may run side by side."""

from __future__ import annotations

import threading
import time

import structlog
from sqlalchemy.exc import OperationalError

from service import db, flow
from service.settings import get_settings

log = structlog.get_logger(__name__)


def run(*, stop: threading.Event) -> None:
    poll = get_settings().timers_poll_s
    log.info("timers_started", poll_s=poll)
    while not stop.is_set():
        started = time.monotonic()
        done: dict[str, int] = {}
        try:
            for due in flow.DUE:
                with db.transaction() as session:
                    done[due.name] = due.step(session, due.batch)
        except OperationalError as exc:
            log.warning("timers_database_unavailable", error_type=type(exc).__name__)
            stop.wait(1.0)
            continue
        if any(done.values()):
            log.info("timers_tick", **done, seconds=round(time.monotonic() - started, 3))
        # A full batch means more are due: go on at once.
        if not any(done[due.name] >= due.batch for due in flow.DUE):
            stop.wait(poll)
