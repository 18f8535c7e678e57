"""The Celery app and the task base class that owns the database transaction.

Tasks take ids, reload what they need, and return early when the work is already
done, because delivery is at least once (`acks_late`). With BROKER_URL unset the
broker is kombu's SQLAlchemy transport on the service's own PostgreSQL (see
docs/operations.md for its trade-offs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Any, cast

import structlog
from celery import Celery, Task
from sqlalchemy.exc import OperationalError

from service import db
from service.settings import get_settings

# Domain modules whose tasks the worker registers.
TASK_MODULES = ["service.health.tasks", "service.profiles.tasks"]


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
        # At-least-once: acknowledge after the task ran, redeliver if the worker died.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "heartbeat": {
                "task": "service.health.tasks.record_heartbeat",
                "schedule": timedelta(seconds=settings.heartbeat_interval_s),
            },
            "rfm": {
                "task": "service.profiles.tasks.recompute_rfm",
                "schedule": timedelta(seconds=settings.rfm_interval_s),
            },
        },
        timezone="UTC",
    )
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
