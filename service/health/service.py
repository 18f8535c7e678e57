"""Readiness checks: is each dependency answering, within a time limit?"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy.exc import OperationalError

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
        # broker as down.)
        channel = conn.default_channel
        from kombu.transport import sqlalchemy as kombu_sqla  # slow import; this broker only

        if isinstance(channel, kombu_sqla.Channel):
            _read_broker_tables(channel, timeout_s=timeout_s)


def _read_broker_tables(channel: Any, *, timeout_s: float) -> None:
    """The SQLAlchemy transport connects to nothing when its channel opens: read its
    tables through its own engine and session, as sending and taking a task do, within
    the check's time (a locked table or a stalled server is a timeout, not "ok")."""
    session = channel.session
    try:
        repository.read_broker_tables(
            session,
            tables=[channel.queue_cls.__table__, channel.message_cls.__table__],
            timeout_ms=max(1, int(timeout_s * 800)),  # ends before the check gives up
        )
    except OperationalError as exc:
        if isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise TimeoutError("the broker's tables did not answer in time") from exc
        raise
    finally:
        session.rollback()
        session.close()


def live_workers() -> int:
    """Workers that recorded a heartbeat within three heartbeat intervals."""
    window = timedelta(seconds=3 * get_settings().heartbeat_interval_s)
    with db.transaction() as session:
        return repository.workers_seen_since(session, since=datetime.now(UTC) - window)
