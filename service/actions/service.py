"""Actions from fired rules: created with the firing, and handed to workers when due.

A fired rule's actions become rows in `actions` in the same transaction as the firing.
The timers process hands due rows to Celery (`hand_over`); a worker delivers each one
(`tasks.dispatch`, with `claims`). An operator gives a dead action a new set of
attempts (`retry_dead`).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from service.actions import repository
from service.actions.models import Action
from service.language.schema import parse_duration
from service.pipeline.stages import StageName, nudge
from service.settings import get_settings
from service.vocabulary import ActionStatus
from service.worker import send_after_commit

DISPATCH_TASK = "service.actions.tasks.dispatch"


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
                "status": ActionStatus.PENDING,
                "next_attempt_at": now,
            }
        )
    ids = repository.insert_actions(session, rows)
    if ids:
        nudge(session, StageName.HAND_OVER)
    return ids


def hand_over(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Hand due actions to workers: marked handed over now, one `dispatch` task each
    sent once this transaction commits; returns their ids. A send that fails leaves the
    rest marked: they are handed again after ACTION_REENQUEUE_S."""
    settings = get_settings()
    handed_before = now - timedelta(seconds=settings.action_reenqueue_s)
    ids = repository.take_ready(session, now=now, handed_before=handed_before, limit=limit)
    send_after_commit(session, DISPATCH_TASK, [{"action_id": i} for i in ids])
    return ids


def retry_dead(session: Session, *, action_id: int, now: datetime) -> Action | None:
    """Give a dead action a new set of attempts; None if it is not dead."""
    action = repository.lock(session, action_id, wait=True)
    if action is None or action.status != ActionStatus.DEAD:
        return None
    action.status, action.attempts, action.next_attempt_at = ActionStatus.PENDING, 0, now
    action.enqueued_at = action.finished_at = None
    action.reason = f"retried at {now.isoformat()} after: {action.last_error}"
    nudge(session, StageName.HAND_OVER)
    return action
