"""The firings log of what rules did."""

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
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.vocabulary import FiringStatus


class RuleFiring(Base):
    """The firings log: a rule matched an event. `scheduled` rules wait for their due
    time and are then `fired` or `cancelled`; `suppressed` ones lost to their limits."""

    __tablename__ = "rule_firings"
    __table_args__ = (UniqueConstraint("event_id", "ruleset", "rule_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    ruleset: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64))
    rule_version: Mapped[int] = mapped_column(Integer)
    version_id: Mapped[int] = mapped_column(ForeignKey("ruleset_versions.id"))
    # The version that re-checked a scheduled firing at its due time.
    decided_version_id: Mapped[int | None] = mapped_column(ForeignKey("ruleset_versions.id"))
    # fired | scheduled | suppressed | cancelled | set_aside (its re-check raised)
    status: Mapped[str] = mapped_column(String(16))
    limits_group: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # A waiting rule's keyed absences ([{events, same: {cart_id: …}, within}]), which
    # are re-checked at the due time with its other conditions, and the events that
    # cancel it early. NULL on rows from before these were kept: the rule's active
    # version then says which events cancel it.
    guard: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    cancel_on: Mapped[list[str] | None] = mapped_column(ARRAY(String(255)))
    # The customer's variants of this rule, when it is under experiment:
    # [{experiment, variant, segments}] (service/experiments/declared.py `Arm`).
    experiments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Due scheduled checks, soonest first.
Index(
    "ix_rule_firings_due",
    RuleFiring.due_at,
    postgresql_where=RuleFiring.status == FiringStatus.SCHEDULED,
)
# A customer's log, and the limits check ("did this group act within the cooldown?").
Index("ix_rule_firings_customer_created", RuleFiring.customer_id, RuleFiring.created_at)
Index(
    "ix_rule_firings_group",
    RuleFiring.customer_id,
    RuleFiring.limits_group,
    RuleFiring.due_at,
    postgresql_where=text("status IN ('scheduled', 'fired') AND limits_group IS NOT NULL"),
)
