from __future__ import annotations

import os

from celery import current_task
from sqlalchemy.orm import Session

from service.health import repository
from service.worker import task


@task(name="service.health.tasks.record_heartbeat")
def record_heartbeat(session: Session) -> None:
    """Scheduled by the scheduler; shows operators that a worker is consuming."""
    node = current_task.request.hostname or "unknown"
    repository.record_heartbeat(session, hostname=node, pid=os.getpid())
