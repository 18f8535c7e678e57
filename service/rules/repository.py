"""SQL for rules: the history the evaluator reads (counts and absences over a customer's
events), and the firings log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, any_, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from service.events import history
from service.language.facts import stored_filter, trigger_name
from service.rules.models import RuleFiring
from service.vocabulary import FiringStatus

# --- health ---------------------------------------------------------------------------------


def metrics_snapshot(session: Session) -> Row[Any]:
    """Rejected reloads, whether the newest change is active, and waiting rules."""
    return session.execute(
        text(
            "SELECT (SELECT count(*) FROM rule_deployments WHERE status = 'rejected') AS rejected, "
            "(SELECT status = 'active' FROM rule_deployments ORDER BY id DESC LIMIT 1) AS ok, "
            "(SELECT count(*) FROM rule_firings WHERE status = 'scheduled') AS waiting"
        )
    ).one()


class PgStore:
    """The evaluator's history, read from the events and the firings log."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def count(
        self,
        *,
        customer: uuid.UUID,
        event: str,
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
    ) -> int:
        type_, name = stored_filter(event)
        return history.count(
            self.session,
            customer=customer,
            type_=type_,
            name=name,
            since=since,
            until=until,
            same=same,
        )

    def first_of(
        self,
        *,
        customer: uuid.UUID,
        events: list[str],
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
        exclude: int,
    ) -> tuple[str, datetime] | None:
        found = history.first_of(
            self.session,
            customer=customer,
            stored=[stored_filter(name) for name in events],
            since=since,
            until=until,
            same=same,
            exclude=exclude,
        )
        if found is None:
            return None
        type_, name, at = found
        return trigger_name(type_, name) or type_, at

    def group_acted(
        self, *, customer: uuid.UUID, group: str, since: datetime, exclude: int | None
    ) -> datetime | None:
        acted: datetime | None = self.session.execute(
            text(
                "SELECT max(coalesce(decided_at, created_at)) FROM rule_firings "
                "WHERE customer_id = :customer AND limits_group = :group "
                "AND status IN ('scheduled', 'fired') AND due_at >= :since "
                "AND id IS DISTINCT FROM :exclude"
            ),
            {"customer": customer, "group": group, "since": since, "exclude": exclude},
        ).scalar_one()
        return acted


# --- the firings log ------------------------------------------------------------------------


def insert_firing(session: Session, **values: Any) -> int | None:
    """The firing's id, or None when this event already fired this rule (a redelivery
    or a second evaluation has no second effect)."""
    return session.execute(
        insert(RuleFiring)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id", "ruleset", "rule_id"])
        .returning(RuleFiring.id)
    ).scalar_one_or_none()


def claim_due(session: Session, *, now: datetime, limit: int) -> Sequence[RuleFiring]:
    return session.scalars(
        select(RuleFiring)
        .where(RuleFiring.status == FiringStatus.SCHEDULED, RuleFiring.due_at <= now)
        .order_by(RuleFiring.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def reschedule_set_aside(session: Session, firing_id: int) -> None:
    """A set-aside waiting rule is due again (its due time has passed: at once)."""
    session.execute(
        update(RuleFiring)
        .where(RuleFiring.id == firing_id, RuleFiring.status == FiringStatus.SET_ASIDE)
        .values(status=FiringStatus.SCHEDULED, reason=None)
    )


def scheduled_for(session: Session, customer: uuid.UUID, *, event: str) -> Sequence[RuleFiring]:
    """The customer's waiting rules that `event` may cancel."""
    return session.scalars(
        select(RuleFiring)
        .where(RuleFiring.customer_id == customer, RuleFiring.status == FiringStatus.SCHEDULED)
        .where(or_(RuleFiring.cancel_on.is_(None), literal(event) == any_(RuleFiring.cancel_on)))
        .order_by(RuleFiring.id)
        .with_for_update(skip_locked=True)
    ).all()


def firings(
    session: Session,
    *,
    customer: uuid.UUID | None,
    rule_id: str | None,
    status: str | None,
    before: int | None,
    limit: int,
) -> Sequence[RuleFiring]:
    query = select(RuleFiring).order_by(RuleFiring.id.desc()).limit(limit)
    if customer is not None:
        query = query.where(RuleFiring.customer_id == customer)
    if rule_id is not None:
        query = query.where(RuleFiring.rule_id == rule_id)
    if status is not None:
        query = query.where(RuleFiring.status == status)
    if before is not None:
        query = query.where(RuleFiring.id < before)
    return session.scalars(query).all()
