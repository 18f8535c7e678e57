"""Actions from fired rules, dispatched exactly once in effect.

A fired rule's actions become rows in `actions` in the same transaction as the firing.
The timers process hands due rows to Celery; a worker `claim`s one (row lock, status
check: the idempotency check before any side effect), delivers it outside the
transaction, and `finish`es it. A worker that dies mid-delivery leaves the row
`sending` until its lease ends; it is then delivered again with the same key, which
receivers use to drop the repeat.
"""

from __future__ import annotations

import hashlib
import uuid
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
from service.language import templates
from service.language.schema import parse_duration
from service.pipeline.stages import StageName, nudge
from service.segments import service as segments
from service.settings import Destination, Settings, get_settings
from service.worker import send_after_commit

log = structlog.get_logger(__name__)

DISPATCH_TASK = "service.actions.tasks.dispatch"
DB_CHANNELS = frozenset({"inbox", "content", "segment"})  # done in the claiming transaction


def idempotency_key(
    *, customer: uuid.UUID, version_id: int, event_id: int, rule_id: str, ordinal: int
) -> str:
    raw = f"{customer}:{version_id}:{event_id}:{rule_id}:{ordinal}".encode()
    return "act_" + hashlib.sha256(raw).hexdigest()[:40]


def create_for_firing(
    session: Session,
    *,
    firing_id: int,
    customer_id: uuid.UUID,
    event_id: int,
    version_id: int,
    rule_id: str,
    actions: list[dict[str, Any]],
    now: datetime,
) -> list[int]:
    """Rows for a fired rule's rendered actions, due now; workers are nudged after the
    commit (and the timers process finds them anyway)."""
    ttl = timedelta(seconds=get_settings().inbox_default_ttl_s)
    rows = []
    for ordinal, action in enumerate(actions):
        payload = dict(action)
        kind = payload["type"]
        if kind in ("offer", "content"):
            span = parse_duration(payload["expires_in"]) if payload.get("expires_in") else ttl
            payload["expires_at"] = (now + span).isoformat()
        rows.append(
            {
                "key": idempotency_key(
                    customer=customer_id,
                    version_id=version_id,
                    event_id=event_id,
                    rule_id=rule_id,
                    ordinal=ordinal,
                ),
                "firing_id": firing_id,
                "ordinal": ordinal,
                "customer_id": customer_id,
                "channel": payload["channel"] if kind == "offer" else kind,
                "purpose": "marketing" if kind == "offer" else None,
                "payload": payload,
                "status": "pending",
                "next_attempt_at": now,
            }
        )
    ids = repository.insert_actions(session, rows)
    if ids:
        nudge(session, StageName.HAND_OVER)
    return ids


def hand_over(session: Session, *, now: datetime, limit: int = 500) -> list[int]:
    """Hand due actions to workers: marked handed over now, one `dispatch` task each
    sent once this transaction commits; returns their ids. A send that fails leaves the
    rest marked: they are handed again after ACTION_REENQUEUE_S."""
    settings = get_settings()
    handed_before = now - timedelta(seconds=settings.action_reenqueue_s)
    ids = repository.take_ready(session, now=now, handed_before=handed_before, limit=limit)
    send_after_commit(session, DISPATCH_TASK, [{"action_id": i} for i in ids])
    return ids


@dataclass(frozen=True)
class Delivery:
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


def claim(session: Session, *, action_id: int, now: datetime) -> Delivery | None:
    """Take a due action for delivery, or settle it here: cancelled (no consent, offer
    expired, frequency cap, no address), deferred (quiet hours), dead (configuration),
    or done at once (inbox, content, segment). None when there is nothing to deliver,
    including when another worker holds it or it is already done."""
    action = repository.lock(session, action_id, wait=False)
    if action is None or action.status not in ("pending", "sending"):
        return None
    if action.next_attempt_at > now:
        return None  # a retry's backoff, quiet hours, or a live lease: not yet
    settings = get_settings()
    if action.status == "sending" and not _take_over(session, action, settings, now=now):
        return None
    traits = repository.traits(session, action.customer_id)
    if _held_back(session, action, traits, settings, now=now):
        return None
    if action.channel in DB_CHANNELS:
        _apply(session, action, now=now)
        _settle(session, action, status="sent", reason=None, now=now, attempt_detail="stored")
        return None
    try:
        delivery = _prepare(session, action, traits, settings, now=now)
    except _Unsendable as exc:
        _settle(session, action, status=exc.status, reason=str(exc), now=now)
        return None
    action.status = "sending"
    action.attempts += 1
    action.next_attempt_at = now + timedelta(seconds=settings.action_lease_s)  # the lease
    return delivery


def finish(session: Session, *, delivery: Delivery, result: channels.Result, now: datetime) -> str:
    """Record how a delivery ended; returns the action's status. A delivery whose lease
    another worker has since taken over changes nothing."""
    action = repository.lock(session, delivery.action_id, wait=True)
    if action is None or action.status != "sending" or action.attempts != delivery.attempt:
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
        action.status, action.finished_at, action.last_error = "sent", now, None
    elif outcome == "retry":
        action.status, action.last_error, action.enqueued_at = "pending", result.detail, None
        action.next_attempt_at = now + timedelta(
            seconds=policy.backoff(action.attempts, result, settings)
        )
    else:
        action.status, action.finished_at, action.last_error = "dead", now, result.detail
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
    if action is None or action.status not in ("pending", "sending"):
        return
    message = f"could not be processed ({type(error).__name__}: {str(error)[:500]})"
    action.status, action.finished_at, action.last_error = "dead", now, message
    log.error("action_set_aside", action_id=action.id, error_type=type(error).__name__)


def retry_dead(session: Session, *, action_id: int, now: datetime) -> Action | None:
    """Give a dead action a new set of attempts; None if it is not dead."""
    action = repository.lock(session, action_id, wait=True)
    if action is None or action.status != "dead":
        return None
    action.status, action.attempts, action.next_attempt_at = "pending", 0, now
    action.enqueued_at = action.finished_at = None
    action.reason = f"retried at {now.isoformat()} after: {action.last_error}"
    nudge(session, StageName.HAND_OVER)
    return action


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
    _settle(session, action, status="dead", reason="lease lost on the last attempt", now=now)
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
        _settle(session, action, status="cancelled", reason=reason, now=now)
        return True
    if action.channel == "email":
        morning = policy.quiet_until(traits, settings, now=now)
        if morning is not None:
            action.next_attempt_at, action.enqueued_at = morning, None
            action.reason = f"quiet hours: deferred to {morning.isoformat()}"
            return True
    cap = settings.frequency_caps.get(action.channel)
    if cap is not None and _over_cap(session, action, cap, now=now):
        reason = f"frequency cap: {cap} {action.channel} per 24 h"
        _settle(session, action, status="cancelled", reason=reason, now=now)
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
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _prepare(
    session: Session, action: Action, traits: dict[str, Any], settings: Settings, *, now: datetime
) -> Delivery:
    firing = repository.firing(session, action.firing_id)
    assert firing is not None
    attempt = action.attempts + 1
    payload = action.payload
    if action.channel == "webhook":
        name = payload.get("destination")
        destination = settings.action_destinations.get(name or "")
        if destination is None:
            raise _Unsendable("dead", f"no destination named {name!r} in ACTION_DESTINATIONS")
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
        return Delivery(
            action.id, action.key, attempt, "webhook", now, destination=destination, body=body
        )
    if action.channel == "email":
        token = repository.email_token(session, action.customer_id)
        if token is None:
            raise _Unsendable("cancelled", "no email address on the profile")
        name = payload.get("template") or ""
        try:
            template = templates.load(settings.rules_dir, name)
            context = {
                "offer": payload,
                "params": payload.get("params", {}),
                "profile": {"traits": traits},
            }
            subject, text = templates.render(template, context)
        except templates.TemplateProblem as exc:
            raise _Unsendable("dead", str(exc)) from exc
        return Delivery(
            action.id,
            action.key,
            attempt,
            "email",
            now,
            to=crypto.decrypt(token),
            subject=subject,
            text=text,
        )
    raise _Unsendable("dead", f"unknown channel {action.channel}")


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
    status: str,
    reason: str | None,
    now: datetime,
    attempt_detail: str | None = None,
) -> None:
    action.status, action.finished_at = status, now
    if status == "dead":
        action.last_error = reason
    else:
        action.reason = reason
    if status == "sent":
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
