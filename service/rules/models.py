"""Rule versions, their deployments, and the decision log of what rules did."""

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


class RulesetVersion(Base):
    """One version of one rule file, kept with its exact text so it can come back."""

    __tablename__ = "ruleset_versions"
    __table_args__ = (UniqueConstraint("name", "content_hash"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)  # the file's own `version:` field
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the text
    file: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(Text)
    first_loaded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class RuleDeployment(Base):
    """An attempt to change the active rules: `active` (the newest active one is what
    runs) or `rejected` (with its errors; nothing changed)."""

    __tablename__ = "rule_deployments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    origin: Mapped[str] = mapped_column(String(16))  # startup | watch | api | cli | rollback
    status: Mapped[str] = mapped_column(String(16))  # active | rejected
    # Hash over the files read (None for a rollback): an unchanged directory is a no-op.
    files_hash: Mapped[str | None] = mapped_column(String(64))
    version_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    note: Mapped[str | None] = mapped_column(Text)


Index(
    "ix_rule_deployments_active",
    RuleDeployment.id,
    postgresql_where=RuleDeployment.status == "active",
)


SET_ASIDE = "set_aside"  # a waiting rule whose re-check raised (see service.pipeline)


class RuleFiring(Base):
    """The decision log: a rule matched an event. `scheduled` rules wait for their due
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Due scheduled checks, soonest first.
Index(
    "ix_rule_firings_due",
    RuleFiring.due_at,
    postgresql_where=RuleFiring.status == "scheduled",
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
