"""SQL for actions, their attempts and the offers inbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from service.actions.models import Action, ActionAttempt, InboxItem
from service.events.identity import EMAIL
from service.profiles.models import Customer, Identity
from service.rules.models import RuleFiring
from service.vocabulary import ActionStatus, FiringStatus


def insert_actions(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """The new actions' ids; an action that exists already (same firing and place) is
    left as it is."""
    if not rows:
        return []
    statement = (
        insert(Action)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["firing_id", "ordinal"])
        .returning(Action.id)
    )
    return list(session.scalars(statement))


def take_ready(
    session: Session, *, now: datetime, handed_before: datetime, limit: int
) -> list[int]:
    """Mark as handed to the broker, and return, actions that are due (pending ones,
    and ones whose worker's lease ran out) and not handed over recently. Several
    timers processes may run: each row goes to one of them."""
    rows = session.execute(
        text(
            "UPDATE actions SET enqueued_at = :now WHERE id IN ("
            " SELECT id FROM actions"
            " WHERE status IN ('pending', 'sending') AND next_attempt_at <= :now"
            "   AND (enqueued_at IS NULL OR enqueued_at < :handed_before)"
            " ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
            " RETURNING id"
        ),
        {"now": now, "handed_before": handed_before, "limit": limit},
    )
    return [row.id for row in rows]


def lock(session: Session, action_id: int, *, wait: bool) -> Action | None:
    """The action, locked; None if another transaction holds it and `wait` is false."""
    statement = select(Action).where(Action.id == action_id)
    statement = statement.with_for_update(skip_locked=not wait)
    return session.scalars(statement).first()


def get(session: Session, action_id: int) -> Action | None:
    return session.get(Action, action_id)


def firing(session: Session, firing_id: int) -> RuleFiring | None:
    return session.get(RuleFiring, firing_id)


def traits(session: Session, customer: uuid.UUID) -> dict[str, Any]:
    value = session.scalar(select(Customer.traits).where(Customer.id == customer))
    return dict(value or {})


def email_token(session: Session, customer: uuid.UUID) -> bytes | None:
    """The newest encrypted email address of the customer."""
    return session.scalar(
        select(Identity.encrypted)
        .where(Identity.customer_id == customer, Identity.kind == EMAIL)
        .where(Identity.encrypted.is_not(None))
        .order_by(Identity.created_at.desc(), Identity.id.desc())
        .limit(1)
    )


def recent_on_channel(
    session: Session, *, customer: uuid.UUID, channel: str, since: datetime, exclude: int
) -> int:
    """Actions on `channel` sent to the customer since `since`, or being sent now."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Action)
            .where(Action.customer_id == customer, Action.channel == channel)
            .where(Action.id != exclude)
            .where(
                ((Action.status == ActionStatus.SENT) & (Action.finished_at >= since))
                | (Action.status == ActionStatus.SENDING)
            )
        )
        or 0
    )


def add_attempt(
    session: Session,
    *,
    action_id: int,
    attempt: int,
    started_at: datetime,
    finished_at: datetime,
    outcome: str,
    detail: str | None,
) -> None:
    session.execute(
        insert(ActionAttempt)
        .values(
            action_id=action_id,
            attempt=attempt,
            started_at=started_at,
            finished_at=finished_at,
            outcome=outcome,
            detail=detail,
        )
        .on_conflict_do_nothing(index_elements=["action_id", "attempt"])
    )


def attempts_of(session: Session, action_ids: Sequence[int]) -> list[ActionAttempt]:
    return list(
        session.scalars(
            select(ActionAttempt)
            .where(ActionAttempt.action_id.in_(action_ids))
            .order_by(ActionAttempt.action_id, ActionAttempt.attempt)
        )
    )


def put_in_inbox(session: Session, **values: Any) -> None:
    session.execute(
        insert(InboxItem).values(**values).on_conflict_do_nothing(index_elements=["action_id"])
    )


def of_customer(session: Session, customer: uuid.UUID, *, limit: int) -> list[Action]:
    return list(
        session.scalars(
            select(Action)
            .where(Action.customer_id == customer)
            .order_by(Action.created_at.desc(), Action.id.desc())
            .limit(limit)
        )
    )


def waiting_of(session: Session, customer: uuid.UUID, *, limit: int) -> list[RuleFiring]:
    """Rules that matched and wait for their due time, and those that were cancelled
    at their due time or held back by their limits: firings that made no action."""
    return list(
        session.scalars(
            select(RuleFiring)
            .where(RuleFiring.customer_id == customer)
            .where(
                RuleFiring.status.in_(
                    [FiringStatus.SCHEDULED, FiringStatus.CANCELLED, FiringStatus.SUPPRESSED]
                )
            )
            .order_by(RuleFiring.created_at.desc(), RuleFiring.id.desc())
            .limit(limit)
        )
    )


def with_status(session: Session, status: str, *, after_id: int | None, limit: int) -> list[Action]:
    statement = select(Action).where(Action.status == status).order_by(Action.id).limit(limit)
    if after_id is not None:
        statement = statement.where(Action.id > after_id)
    return list(session.scalars(statement))
