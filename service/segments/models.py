"""Segment membership: which named segments a customer is in."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class SegmentMembership(Base):
    __tablename__ = "segment_memberships"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    segment: Mapped[str] = mapped_column(String(64), primary_key=True)
    # What put the customer there: a rule (`rule:<id>`), the API, a segment definition.
    added_by: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


Index("ix_segment_memberships_segment", SegmentMembership.segment)
