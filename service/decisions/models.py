"""The decision log and exposures: what the storefront was told, written in batches
after the response."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # the response's decision_id
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    degraded: Mapped[bool] = mapped_column(Boolean)
    context: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Per placement: the content and offers chosen, and where each came from.
    placements: Mapped[dict[str, Any]] = mapped_column(JSONB)
    rule_versions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


Index("ix_decisions_customer_decided", Decision.customer_id, Decision.decided_at)


class Exposure(Base):
    """One thing shown in one placement by one decision: what experiments and KPIs count."""

    __tablename__ = "exposures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("decisions.id"))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    placement: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # content | offer
    item: Mapped[str] = mapped_column(String(128))  # the content id or offer code
    source: Mapped[str] = mapped_column(String(16))  # rule | inbox | default
    rule: Mapped[str | None] = mapped_column(String(160))  # ruleset/rule id


Index("ix_exposures_placement_decided", Exposure.placement, Exposure.decided_at)
Index("ix_exposures_decision", Exposure.decision_id)
