"""What rules do to customers: actions to dispatch, their delivery attempts, and the
offers inbox the decision endpoint serves from."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.vocabulary import ActionStatus


class Action(Base):
    """One action of a fired rule. `pending` until dispatched (`next_attempt_at` says
    when: now, after a retry's backoff, or the end of quiet hours); `sending` while a
    worker holds it (`next_attempt_at` is then the end of its lease); then `sent`,
    `cancelled` (with the reason) or `dead` (with the last error, after the last
    attempt or a permanent failure)."""

    __tablename__ = "actions"
    __table_args__ = (UniqueConstraint("firing_id", "ordinal"), UniqueConstraint("key"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Sent to receivers (`webhook-id`, email Message-ID) so they can deduplicate too.
    key: Mapped[str] = mapped_column(String(64))
    firing_id: Mapped[int] = mapped_column(ForeignKey("rule_firings.id"))
    ordinal: Mapped[int] = mapped_column(SmallInteger)  # its place in the rule's actions
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))  # email | webhook | inbox | content | segment
    purpose: Mapped[str | None] = mapped_column(String(32))  # consent needed, e.g. marketing
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the rendered rule action
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When it was last handed to the broker: a hand-off that got lost is repeated.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# What the timers hand to workers: pending actions by due time, and expired leases.
Index(
    "ix_actions_ready",
    Action.next_attempt_at,
    postgresql_where=Action.status.in_([ActionStatus.PENDING, ActionStatus.SENDING]),
)
Index("ix_actions_customer_created", Action.customer_id, Action.created_at)
Index("ix_actions_dead", Action.id, postgresql_where=Action.status == ActionStatus.DEAD)


class ActionAttempt(Base):
    """One delivery attempt of an action and how it ended."""

    __tablename__ = "action_attempts"
    __table_args__ = (UniqueConstraint("action_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(16))  # sent | retry | dead
    detail: Mapped[str | None] = mapped_column(Text)


class InboxItem(Base):
    """An offer (or content for a placement) kept for a customer until it expires or
    is used: what the decision endpoint serves."""

    __tablename__ = "inbox_items"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), unique=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(16))  # offer | content
    name: Mapped[str] = mapped_column(String(128))  # the offer code, or the content id
    placement: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_inbox_items_customer", InboxItem.customer_id, InboxItem.expires_at)
