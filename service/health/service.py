"""Readiness checks: is each dependency answering, within a time limit?"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

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
        # Opening a channel and declaring the default queue proves the broker answers,
        # for every transport (the SQLAlchemy one connects lazily).
        channel: Any = conn.default_channel
        channel.queue_declare(queue="celery", durable=True, auto_delete=False)


def live_workers() -> int:
    """Workers that recorded a heartbeat within three heartbeat intervals."""
    window = timedelta(seconds=3 * get_settings().heartbeat_interval_s)
    with db.transaction() as session:
        return repository.workers_seen_since(session, since=datetime.now(UTC) - window)
