"""Segments over HTTP: what the marketer's API returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class RunOut(BaseModel):
    """A pass over every customer: its progress and what it changed."""

    id: int
    kind: Literal["refresh", "backfill"]
    segments: list[str]
    status: Literal["running", "done", "superseded"]
    total: int = Field(description="Customers when it started.")
    done: int = Field(description="Customers recomputed so far.")
    progress: float = Field(description="done / total, 0 to 1.")
    entered: int
    exited: int
    note: str | None
    created_at: datetime
    finished_at: datetime | None


class SegmentOut(BaseModel):
    id: str
    computed: bool = Field(
        description="Defined by a file in rules/segments/ (else filled by rules' segment actions)."
    )
    description: str
    version: int | None = Field(description="The active definition's version.")
    version_id: int | None = Field(
        description="Its stored version's id (for `POST /v1/rules/rollback`)."
    )
    file: str | None
    size: int = Field(description="Customers in the segment now.")
    backfill: RunOut | None = Field(description="A backfill of this segment still running.")


class SegmentsOut(BaseModel):
    items: list[SegmentOut]
    refresh: RunOut | None = Field(description="The last scheduled refresh.")


class MemberOut(BaseModel):
    customer_id: uuid.UUID
    entered_at: datetime
    added_by: str
    version: int | None


class MembersPage(BaseModel):
    items: list[MemberOut]
    next_after: uuid.UUID | None = Field(description="Pass as `after` for the next page.")


class SizePoint(BaseModel):
    at: datetime
    size: int
    entered: int = Field(description="Entered in the step that ends here.")
    exited: int = Field(description="Left in the step that ends here.")


class HistoryOut(BaseModel):
    segment: str
    step: Literal["hour", "day"]
    points: list[SizePoint]


class PeriodOut(BaseModel):
    segment: str
    entered_at: datetime
    exited_at: datetime | None
    added_by: str
    exited_by: str | None
    version: int | None


class ProfileSegmentsOut(BaseModel):
    customer_id: uuid.UUID
    segments: list[str] = Field(description="The segments the customer is in now.")
    periods: list[PeriodOut] = Field(description="Current and past periods, newest first.")
