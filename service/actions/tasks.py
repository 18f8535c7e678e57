"""Workers deliver actions, one task an action; the hand-over stage (nudged after each
commit that creates actions, and run by the timers process) sends them here."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from service import db
from service.actions import channels, claims, service
from service.pipeline.isolation import OUTAGES
from service.settings import get_settings
from service.vocabulary import ActionStatus, Channel
from service.worker import get_celery

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@get_celery().task(name=service.DISPATCH_TASK, acks_late=True, ignore_result=True)
def dispatch(action_id: int) -> str | None:
    """Deliver one action. Two transactions around the network call, so no row lock
    is held while a receiver is slow; the claim is the idempotency check."""
    try:
        with db.transaction() as session:
            delivery = claims.claim(session, action_id=action_id, now=_now())
    except OUTAGES:
        raise  # redelivered by the broker, or handed over again
    except Exception as exc:
        # The one action set aside (dead, with the error), never retried in a loop.
        with db.transaction() as session:
            claims.set_dead(session, action_id=action_id, error=exc, now=_now())
        return ActionStatus.DEAD
    if delivery is None:
        return None
    try:
        result = deliver(delivery)
    except Exception as exc:
        result = channels.Result("failed", f"could not be delivered ({type(exc).__name__})")
    with db.transaction() as session:
        return claims.finish(session, delivery=delivery, result=result, now=_now())


def deliver(delivery: claims.Outgoing) -> channels.Result:
    if delivery.channel == Channel.WEBHOOK:
        assert delivery.destination is not None
        return channels.post_webhook(
            destination=delivery.destination, key=delivery.key, body=delivery.body
        )
    assert delivery.to is not None
    return channels.send_email(
        settings=get_settings(),
        to=delivery.to,
        subject=delivery.subject,
        text=delivery.text,
        key=delivery.key,
    )
