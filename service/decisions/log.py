"""The decision log, written off the request path: a response only appends to a
bounded buffer; a background thread writes what gathered, in one transaction, every
DECISION_LOG_FLUSH_S. A database outage never reaches the storefront: the buffer keeps
what it can and drops the oldest beyond DECISION_LOG_MAX_PENDING, counting them.

Each API process has one, made by the app's lifespan (`open_log`) and kept on the app's
state; the lifespan writes what is left when the process stops."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from service import db
from service.decisions import repository
from service.experiments import repository as experiments
from service.settings import Settings

log = structlog.get_logger(__name__)

# The decision row, its exposures, its experiment exposures.
Entry = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


class DecisionLog:
    def __init__(self, *, max_pending: int, flush_s: float) -> None:
        self.flush_s = flush_s
        self._pending: deque[Entry] = deque(maxlen=max_pending)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0

    def record(
        self,
        decision: dict[str, Any],
        exposures: list[dict[str, Any]],
        arms: list[dict[str, Any]] | None = None,
    ) -> None:
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1  # the oldest goes: the deque drops it on append
            self._pending.append((decision, exposures, arms or []))

    def flush(self) -> int:
        """Write what is pending; returns how many decisions were written."""
        with self._lock:
            batch, self._pending = list(self._pending), deque(maxlen=self._pending.maxlen)
        if not batch:
            return 0
        try:
            with db.transaction() as session:
                repository.write_log(
                    session,
                    [d for d, _, _ in batch],
                    [e for _, exposures, _ in batch for e in exposures],
                )
                experiments.record(session, [a for _, _, arms in batch for a in arms])
        except SQLAlchemyError as exc:
            with self._lock:  # back in front of newer ones, as far as room allows
                room = (self._pending.maxlen or 0) - len(self._pending)
                self.dropped += max(0, len(batch) - room)
                self._pending.extendleft(reversed(batch[-room:] if room else []))
            log.warning(
                "decision_log_write_failed", error_type=type(exc).__name__, batch=len(batch)
            )
            return 0
        self.written += len(batch)
        return len(batch)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()


def open_log(settings: Settings) -> DecisionLog:
    """A decision log as the settings say, its writer started unless
    DECISION_LOG_BACKGROUND is false (then it is written by `flush` and `stop` only)."""
    decisions = DecisionLog(
        max_pending=settings.decision_log_max_pending, flush_s=settings.decision_log_flush_s
    )
    if settings.decision_log_background:
        decisions.start()
    return decisions
