"""The Celery app and the task base class that owns the database transaction.

Tasks take ids, reload what they need, and return early when the work is already
done, because delivery is at least once (`acks_late`). With BROKER_URL unset the
broker is kombu's SQLAlchemy transport on the service's own PostgreSQL (see
docs/operations.md for its trade-offs).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any, cast

import structlog
from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service import db
from service.settings import get_settings

log = structlog.get_logger(__name__)

# Modules with tasks of their own (the stages' and periodic jobs' tasks are made from
# `service.flow`).
TASK_MODULES = ["service.actions.tasks"]


def broker_url() -> str:
    settings = get_settings()
    if settings.broker_url:
        return settings.broker_url
    from kombu.transport import sqlalchemy as kombu_sqla  # slow import; only this broker

    # The SQLAlchemy transport polls its table, once a second by default. Its transport
    # options all go to create_engine(), so the interval cannot be set there.
    kombu_sqla.Transport.polling_interval = 0.2
    return "sqla+" + db.database_url()


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("personalize", include=TASK_MODULES)
    # A callable default is resolved when the configuration is first read, not at
    # import: importing a tasks module must not need a database.
    app.add_defaults(lambda: {"broker_url": broker_url()})
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=settings.broker_queue,
        # At-least-once: acknowledge after the task ran, redeliver if the worker died.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
    )
    # Each worker process (prefork: each child) sends its nudges from a thread of its own.
    worker_process_init.connect(_start_process_nudger, weak=False, dispatch_uid="nudger")
    worker_process_shutdown.connect(_stop_process_nudger, weak=False, dispatch_uid="nudger")
    from service import flow  # the stages import domain services, which import this module

    schedule = flow.register(app)
    app.add_defaults(lambda: {"beat_schedule": schedule})
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery()


class DatabaseTask(Task[Any, Any]):
    """Runs the task body in one transaction: committed on success, rolled back on error.

    The task function receives the session as its first argument; callers pass only
    the task's own (keyword) arguments.
    """

    abstract = True
    typing = False  # the session argument is injected here, not sent by callers
    acks_late = True
    autoretry_for = (OperationalError,)
    retry_backoff = True
    retry_jitter = True
    max_retries = 5

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        structlog.contextvars.bind_contextvars(task_id=self.request.id, task=self.name)
        try:
            with db.transaction() as session:
                return super().__call__(session, *args, **kwargs)
        finally:
            structlog.contextvars.unbind_contextvars("task_id", "task")


def task(**options: Any) -> Callable[[Callable[..., Any]], DatabaseTask]:
    """Declare a database task on the service's Celery app."""
    return cast(
        Callable[[Callable[..., Any]], DatabaseTask],
        get_celery().task(base=DatabaseTask, **options),
    )


class Nudger:
    """Sends named tasks from a background thread when nudged, coalescing nudges that
    come within `interval_s`: a request never waits on the broker, nor fails with it.
    A lost nudge only delays work; the scheduler's periodic sweep does it anyway."""

    def __init__(self, *, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start(self) -> None:
        with self._lock:
            self._ensure_thread()

    def nudge(self, name: str) -> None:
        with self._lock:
            if self._stopping.is_set():
                return  # the process is stopping: the sweep does it
            self._names.add(name)
            self._ensure_thread()
        self._wake.set()

    def stop(self, *, timeout_s: float = 2.0) -> None:
        """Send what is pending, then end the thread (waiting at most `timeout_s`)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            thread.join(timeout=timeout_s)

    def _ensure_thread(self) -> None:
        """Called holding the lock: the thread runs in this process (a forked child
        starts its own)."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="nudger", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._send()
            if self._stopping.wait(self.interval_s):
                self._send()
                return

    def _send(self) -> None:
        with self._lock:
            names, self._names = self._names, set()
        for name in sorted(names):
            try:
                get_celery().send_task(name)
            except Exception as exc:
                log.warning("nudge_failed", task=name, error_type=type(exc).__name__)


_nudger: Nudger | None = None  # this process's, see `nudger`


def nudger() -> Nudger:
    """This process's nudger: the one its start-up began (the API's lifespan, each worker
    process), else one begun on first use (the timers process, admin commands)."""
    global _nudger
    if _nudger is None:
        _nudger = Nudger()
    return _nudger


def start_nudger() -> Nudger:
    """Begin this process's nudger (the one `nudger` returns until it is stopped)."""
    global _nudger
    if _nudger is not None:
        stop_nudger(_nudger)
    _nudger = Nudger()
    _nudger.start()
    return _nudger


def stop_nudger(stopping: Nudger) -> None:
    """Send what `stopping` holds and end it; the process's nudger is no longer it."""
    global _nudger
    if _nudger is stopping:
        _nudger = None
    stopping.stop()


def _start_process_nudger(**_: Any) -> None:
    start_nudger()


def _stop_process_nudger(**_: Any) -> None:
    if _nudger is not None:
        stop_nudger(_nudger)


def nudge_after_commit(session: Session, task_name: str) -> None:
    """Nudge `task_name` once the session's transaction has committed (never before:
    the task must find what this transaction wrote)."""
    names: set[str] = session.info.setdefault("nudges", set())
    if not session.info.get("nudge_hooks"):
        session.info["nudge_hooks"] = True
        event.listen(session, "after_commit", _send_nudges)
        event.listen(session, "after_rollback", _drop_nudges)
    names.add(task_name)


def _send_nudges(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the transaction has not committed yet
    for name in session.info.pop("nudges", set()):
        nudger().nudge(name)


def _drop_nudges(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop("nudges", None)


def send_after_commit(session: Session, task_name: str, calls: list[dict[str, Any]]) -> None:
    """Send `task_name` once per keyword arguments in `calls` when the session's
    transaction commits (in the committing thread: for workers and timers, not requests).
    A send that fails stops the rest; the caller's rows say what to send again."""
    pending: list[tuple[str, dict[str, Any]]] = session.info.setdefault("sends", [])
    if not session.info.get("send_hooks"):
        session.info["send_hooks"] = True
        event.listen(session, "after_commit", _send_pending)
        event.listen(session, "after_rollback", _drop_pending)
    pending.extend((task_name, kwargs) for kwargs in calls)


def _send_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return
    for name, kwargs in session.info.pop("sends", []):
        try:
            get_celery().send_task(name, kwargs=kwargs)
        except Exception as exc:
            log.warning("send_failed", task=name, error_type=type(exc).__name__)
            return


def _drop_pending(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop("sends", None)
