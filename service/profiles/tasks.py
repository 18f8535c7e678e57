from __future__ import annotations

import structlog
from sqlalchemy.orm import Session

from service.profiles import service
from service.worker import task

log = structlog.get_logger(__name__)


@task(name="service.profiles.tasks.recompute_rfm")
def recompute_rfm(session: Session) -> None:
    """RFM quintiles across the customer base (scheduled; safe to run at any time)."""
    scored = service.rfm_job(session)
    log.info("rfm_recomputed", customers=scored)
