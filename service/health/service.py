"""Readiness checks: is each dependency answering, within a time limit?"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from service import db
from service.health import repository
from service.settings import get_settings
from service.worker import get_celery


def check_database(*, timeout_s: float) -> None:
    with db.transaction() as session:
        repository.ping(session, timeout_ms=int(timeout_s * 1000))


def check_broker(*, timeout_s: float) -> None:
    with get_celery().connection_for_write(connect_timeout=timeout_s) as conn:
        conn.ensure_connection(max_retries=1, timeout=math.ceil(timeout_s))
        # Opening a channel is a round trip on RabbitMQ and Redis. (Declaring a queue
        # here could clash with one declared with other arguments and report a working
        # broker as down.) The SQLAlchemy transport's broker is the database itself.
        conn.default_channel  # noqa: B018 - opening it is the check


def live_workers() -> int:
    """Workers that recorded a heartbeat within three heartbeat intervals."""
    window = timedelta(seconds=3 * get_settings().heartbeat_interval_s)
    with db.transaction() as session:
        return repository.workers_seen_since(session, since=datetime.now(UTC) - window)
