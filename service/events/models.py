"""Received webhooks, canonical events and the quarantine."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class WebhookDelivery(Base):
    """A signed delivery exactly as received. Unique per platform delivery id: a
    redelivery finds its row and has no second effect."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("source", "delivery_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str | None] = mapped_column(String(128))
    # Non-secret headers only (topic, shop, API version, trigger time), never signatures.
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))  # processed | ignored | quarantined
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Event(Base):
    """A canonical event on a customer's profile."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("source", "message_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(255))
    # NULL until the event is resolved onto a profile (after the commit, in batches).
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    # Identity keys (emails and phones hashed and encrypted) until resolved, then NULL.
    identity_keys: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # Why resolution failed for this event alone (it is then also in the quarantine).
    resolve_error: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB)
    context: Mapped[dict[str, Any]] = mapped_column(JSONB)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_deliveries.id"))
    # When rules were evaluated for it (after it was resolved onto a profile).
    evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# A profile's history, newest first, and window counts for rules ("Product Viewed
# 3 times in 24 h").
Index("ix_events_customer_occurred", Event.customer_id, Event.occurred_at)
Index("ix_events_customer_name_occurred", Event.customer_id, Event.name, Event.occurred_at)
# The outbox: events not yet resolved, oldest first.
Index(
    "ix_events_unresolved",
    Event.id,
    postgresql_where=Event.customer_id.is_(None) & Event.resolve_error.is_(None),
)
# The rules' outbox: resolved events not yet evaluated.
Index(
    "ix_events_unevaluated",
    Event.id,
    postgresql_where=Event.customer_id.is_not(None) & Event.evaluated_at.is_(None),
)
# The part of it that customers' own actions made (not a segment's announcements), which
# rules take first: a backfill's thousands of Segment Entered events wait, not them.
Index(
    "ix_events_unevaluated_live",
    Event.id,
    postgresql_where=text(
        "customer_id IS NOT NULL AND evaluated_at IS NULL AND source <> 'segments'"
    ),
)


class QuarantinedEvent(Base):
    """Input that could not be mapped or validated: kept with its reason, replayable."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(128))
    # A webhook's raw body stays on its delivery; an API event's payload is kept here.
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_deliveries.id"))
    payload: Mapped[Any | None] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), server_default="held")  # held | replayed
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
