"""Segment membership, with its history, and the jobs that recompute it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class SegmentMembership(Base):
    """A period in a segment: open (`exited_at` NULL) while the customer is in it. The
    periods of a segment give its size at any past time."""

    __tablename__ = "segment_memberships"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    segment: Mapped[str] = mapped_column(String(64))
    # What put the customer there: `definition` (a segment file), `rule:<id>`, the API.
    added_by: Mapped[str] = mapped_column(String(128))
    # The segment file's version that put them there (NULL when not a definition).
    version: Mapped[int | None] = mapped_column(Integer)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("ruleset_versions.id"))
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    exited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why the period ended: `no longer matches`, `rule:<id>`, `definition removed`, `merged`.
    exited_by: Mapped[str | None] = mapped_column(String(128))


OPEN = SegmentMembership.exited_at.is_(None)
# One open period per customer and segment; members of a segment; a customer's segments.
Index(
    "uq_segment_memberships_open",
    SegmentMembership.customer_id,
    SegmentMembership.segment,
    unique=True,
    postgresql_where=OPEN,
)
Index(
    "ix_segment_memberships_members",
    SegmentMembership.segment,
    SegmentMembership.customer_id,
    postgresql_where=OPEN,
)
# Size history: who entered and who left a segment after a time.
Index("ix_segment_memberships_entered", SegmentMembership.segment, SegmentMembership.entered_at)
Index(
    "ix_segment_memberships_exited",
    SegmentMembership.segment,
    SegmentMembership.exited_at,
    postgresql_where=SegmentMembership.exited_at.is_not(None),
)


class SegmentRun(Base):
    """A pass over every customer: `refresh` (scheduled; time moves customers in and
    out) or `backfill` (a new or changed definition). It advances a committed batch at
    a time from `cursor`, so progress is visible and a crash resumes where it was."""

    __tablename__ = "segment_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # refresh | backfill
    # The segments whose membership it changes (every active one for a refresh).
    segments: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    status: Mapped[str] = mapped_column(String(16))  # running | done | superseded
    total: Mapped[int] = mapped_column(Integer)  # customers when it started
    done: Mapped[int] = mapped_column(Integer, server_default="0")
    entered: Mapped[int] = mapped_column(Integer, server_default="0")
    exited: Mapped[int] = mapped_column(Integer, server_default="0")
    cursor: Mapped[uuid.UUID | None] = mapped_column()  # the last customer id done
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_segment_runs_running", SegmentRun.id, postgresql_where=text("status = 'running'"))
