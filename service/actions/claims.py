"""Claiming a due action, and settling it: delivered exactly once in effect.

A worker `claim`s a due action (row lock, status check: the idempotency check before
any side effect), delivers it outside the transaction, and `finish`es it. A worker that
dies mid-delivery leaves the row `sending` until its lease ends; it is then delivered
again with the same key, which receivers use to drop the repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy.orm import Session

from service import crypto
from service.actions import channels, policy, repository
from service.actions.models import Action
from service.db import advisory_xact_locks
from service.experiments import exposures
from service.language import templates
from service.segments import service as segments
from service.settings import Destination, Settings, get_settings
from service.vocabulary import ActionStatus, Channel

log = structlog.get_logger(__name__)

# Done in the claiming transaction: the inbox, and content and segment actions (whose
# kind is their channel).
DB_CHANNELS = frozenset({Channel.INBOX, "content", "segment"})
IN_FLIGHT = (ActionStatus.PENDING, ActionStatus.SENDING)


@dataclass(frozen=True)
class Outgoing:
    """What a worker needs to deliver an action outside the database transaction."""

    action_id: int
    key: str
    attempt: int
    channel: str
    started_at: datetime
    destination: Destination | None = None
    body: bytes = b""
    to: str | None = None
    subject: str = ""
    text: str = ""


def claim(session: Session, *, action_id: int, now: datetime) -> Outgoing | None:
    """Take a due action for delivery, or settle it here: cancelled (no consent, offer
    expired, frequency cap, no address), deferred (quiet hours), dead (configuration),
    or done at once (inbox, content, segment). None when there is nothing to deliver,
    including when another worker holds it or it is already done."""
    action = repository.lock(session, action_id, wait=False)
    if action is None or action.status not in IN_FLIGHT:
        return None
    if action.next_attempt_at > now:
        return None  # a retry's backoff, quiet hours, or a live lease: not yet
    settings = get_settings()
    if action.status == ActionStatus.SENDING and not _take_over(session, action, settings, now=now):
        return None
    traits = repository.traits(session, action.customer_id)
    if _held_back(session, action, traits, settings, now=now):
        return None
    if action.channel in DB_CHANNELS:
        _apply(session, action, now=now)
        _settle(
            session, action, status=ActionStatus.SENT, reason=None, now=now, attempt_detail="stored"
        )
        return None
    try:
        delivery = _prepare(session, action, traits, settings, now=now)
    except _Unsendable as exc:
        _settle(session, action, status=exc.status, reason=str(exc), now=now)
        return None
    action.status = ActionStatus.SENDING
    action.attempts += 1
    action.next_attempt_at = now + timedelta(seconds=settings.action_lease_s)  # the lease
    return delivery


def finish(session: Session, *, delivery: Outgoing, result: channels.Result, now: datetime) -> str:
    """Record how a delivery ended; returns the action's status. A delivery whose lease
    another worker has since taken over changes nothing."""
    action = repository.lock(session, delivery.action_id, wait=True)
    if (
        action is None
        or action.status != ActionStatus.SENDING
        or action.attempts != delivery.attempt
    ):
        return action.status if action else "missing"
    settings = get_settings()
    outcome = result.outcome
    if outcome == "retry" and action.attempts >= settings.action_max_attempts:
        outcome = "failed"
    repository.add_attempt(
        session,
        action_id=action.id,
        attempt=delivery.attempt,
        started_at=delivery.started_at,
        finished_at=now,
        outcome={"sent": "sent", "retry": "retry", "failed": "dead"}[outcome],
        detail=result.detail,
    )
    if outcome == "sent":
        if action.payload["type"] == "offer":
            _apply(session, action, now=now)
        action.status, action.finished_at, action.last_error = ActionStatus.SENT, now, None
        _exposed(session, action, now=now)
    elif outcome == "retry":
        action.status, action.last_error = ActionStatus.PENDING, result.detail
        action.enqueued_at = None
        action.next_attempt_at = now + timedelta(
            seconds=policy.backoff(action.attempts, result, settings)
        )
    else:
        action.status, action.finished_at, action.last_error = ActionStatus.DEAD, now, result.detail
    log.info(
        "action_delivered",
        action_id=action.id,
        channel=action.channel,
        attempt=delivery.attempt,
        status=action.status,
        detail=result.detail,
    )
    return action.status


def set_dead(session: Session, *, action_id: int, error: Exception, now: datetime) -> None:
    """An action whose processing raised is dead with the error (listed with the dead
    ones, retried by `retry_dead` once the cause is fixed)."""
    action = repository.lock(session, action_id, wait=True)
    if action is None or action.status not in IN_FLIGHT:
        return
    message = f"could not be processed ({type(error).__name__}: {str(error)[:500]})"
    action.status, action.finished_at, action.last_error = ActionStatus.DEAD, now, message
    log.error("action_set_aside", action_id=action.id, error_type=type(error).__name__)


# --- checks ---------------------------------------------------------------------------


def _take_over(session: Session, action: Action, settings: Settings, *, now: datetime) -> bool:
    """An action whose worker died or hung past its lease: record the lost attempt;
    False when that was the last one (it is then dead)."""
    repository.add_attempt(
        session,
        action_id=action.id,
        attempt=action.attempts,
        started_at=action.next_attempt_at - timedelta(seconds=settings.action_lease_s),
        finished_at=now,
        outcome="lost",
        detail="the worker did not finish within its lease",
    )
    if action.attempts < settings.action_max_attempts:
        return True
    _settle(
        session, action, status=ActionStatus.DEAD, reason="lease lost on the last attempt", now=now
    )
    return False


def _held_back(
    session: Session,
    action: Action,
    traits: dict[str, Any],
    settings: Settings,
    *,
    now: datetime,
) -> bool:
    """Consent, expiry, quiet hours and frequency caps, checked just before sending:
    True when the action was cancelled or deferred instead."""
    reason = policy.blocked(action, traits, settings, now=now)
    if reason:
        _settle(session, action, status=ActionStatus.CANCELLED, reason=reason, now=now)
        return True
    if action.channel == Channel.EMAIL:
        morning = policy.quiet_until(traits, settings, now=now)
        if morning is not None:
            action.next_attempt_at, action.enqueued_at = morning, None
            action.reason = f"quiet hours: deferred to {morning.isoformat()}"
            return True
    cap = settings.frequency_caps.get(action.channel)
    if cap is not None and _over_cap(session, action, cap, now=now):
        reason = f"frequency cap: {cap} {action.channel} per 24 h"
        _settle(session, action, status=ActionStatus.CANCELLED, reason=reason, now=now)
        return True
    return False


def _over_cap(session: Session, action: Action, cap: int, *, now: datetime) -> bool:
    # Serialise the check per customer and channel: two workers must not both pass it.
    advisory_xact_locks(session, [f"cap:{action.customer_id}:{action.channel}"])
    sent = repository.recent_on_channel(
        session,
        customer=action.customer_id,
        channel=action.channel,
        since=now - timedelta(days=1),
        exclude=action.id,
    )
    return sent >= cap


# --- effects --------------------------------------------------------------------------


class _Unsendable(Exception):
    def __init__(self, status: ActionStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _prepare(
    session: Session, action: Action, traits: dict[str, Any], settings: Settings, *, now: datetime
) -> Outgoing:
    firing = repository.firing(session, action.firing_id)
    assert firing is not None
    attempt = action.attempts + 1
    payload = action.payload
    if action.channel == Channel.WEBHOOK:
        name = payload.get("destination")
        destination = settings.action_destinations.get(name or "")
        if destination is None:
            raise _Unsendable(
                ActionStatus.DEAD, f"no destination named {name!r} in ACTION_DESTINATIONS"
            )
        body = orjson.dumps(
            {
                "type": f"action.{payload['type']}",
                "timestamp": now,
                "data": {
                    "id": action.key,
                    "customer_id": action.customer_id,
                    "rule": {
                        "ruleset": firing.ruleset,
                        "id": firing.rule_id,
                        "version": firing.rule_version,
                    },
                    "event_id": firing.event_id,
                    "action": payload,
                },
            }
        )
        return Outgoing(
            action.id, action.key, attempt, Channel.WEBHOOK, now, destination=destination, body=body
        )
    if action.channel == Channel.EMAIL:
        token = repository.email_token(session, action.customer_id)
        if token is None:
            raise _Unsendable(ActionStatus.CANCELLED, "no email address on the profile")
        name = payload.get("template") or ""
        try:
            template = templates.load(settings.rules_dir, name)
            subject, text = templates.render(template, templates.email_context(payload, traits))
        except templates.TemplateProblem as exc:
            raise _Unsendable(ActionStatus.DEAD, str(exc)) from exc
        return Outgoing(
            action.id,
            action.key,
            attempt,
            Channel.EMAIL,
            now,
            to=crypto.decrypt(token),
            subject=subject,
            text=text,
        )
    raise _Unsendable(ActionStatus.DEAD, f"unknown channel {action.channel}")


def _exposed(session: Session, action: Action, *, now: datetime) -> None:
    """A sent action exposes its customer to the variants its firing was given."""
    firing = repository.firing(session, action.firing_id)
    if firing is not None and firing.experiments:
        rows = exposures.arms(
            firing.experiments, customer_id=action.customer_id, source="action", at=now
        )
        exposures.record(session, rows)


def _apply(session: Session, action: Action, *, now: datetime) -> None:
    """The database side of an action: the inbox entry, or the segment change."""
    payload = action.payload
    kind = payload["type"]
    if kind in ("offer", "content"):
        repository.put_in_inbox(
            session,
            action_id=action.id,
            customer_id=action.customer_id,
            kind=kind,
            name=payload["offer"] if kind == "offer" else payload["content"],
            placement=payload.get("placement"),
            params=payload.get("params", {}),
            expires_at=datetime.fromisoformat(payload["expires_at"])
            if payload.get("expires_at")
            else None,
        )
    elif kind == "segment":
        firing = repository.firing(session, action.firing_id)
        by = f"rule:{firing.rule_id}" if firing else "rule"
        if payload.get("add"):
            segments.add(
                session, customer=action.customer_id, segment=payload["add"], by=by, now=now
            )
        else:
            segments.remove(
                session, customer=action.customer_id, segment=payload["remove"], by=by, now=now
            )


def _settle(
    session: Session,
    action: Action,
    *,
    status: ActionStatus,
    reason: str | None,
    now: datetime,
    attempt_detail: str | None = None,
) -> None:
    action.status, action.finished_at = status, now
    if status == ActionStatus.DEAD:
        action.last_error = reason
    else:
        action.reason = reason
    if status == ActionStatus.SENT:
        _exposed(session, action, now=now)
        action.attempts += 1
        repository.add_attempt(
            session,
            action_id=action.id,
            attempt=action.attempts,
            started_at=now,
            finished_at=now,
            outcome="sent",
            detail=attempt_detail,
        )
    log.info(
        "action_settled", action_id=action.id, channel=action.channel, status=status, reason=reason
    )
