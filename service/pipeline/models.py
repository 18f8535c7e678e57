"""Items a processing stage set aside because processing them raised."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class Stage(StrEnum):
    """The stages that set items aside, and what their `item_id` names."""

    EVALUATE = "evaluate"  # an event (events.id) the rules could not evaluate
    SEGMENTS = "segments"  # a customer whose segments could not be recomputed (no item id)
    TIMERS = "timers"  # a waiting rule (rule_firings.id) that could not be decided


class SetAside(Base):
    """One failure of one item. Open while `replayed_at` is NULL; a replay puts the item
    back in its stage's queue and closes the row (a new failure opens a new one)."""

    __tablename__ = "set_aside"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[int | None] = mapped_column(BigInteger)
    customer_id: Mapped[uuid.UUID | None]
    # The exception's class and message (messages name no identity: values are hashed
    # or encrypted before they reach the database, and events name customers by id).
    error_type: Mapped[str] = mapped_column(String(128))
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index(
    "ix_set_aside_open",
    SetAside.stage,
    SetAside.id,
    postgresql_where=text("replayed_at IS NULL"),
)
Index("ix_set_aside_customer", SetAside.customer_id)
