"""Exposures to experiments: who saw (or was sent, or would have been sent) which
variant, first and last. One row per (experiment, unit, variant): a unit seen in two
variants (two profiles merged) keeps both rows and is counted under its first."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base


class ExperimentExposure(Base):
    __tablename__ = "experiment_exposures"
    __table_args__ = (UniqueConstraint("experiment", "unit", "variant"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    experiment: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(255))
    # What was bucketed: the customer's id, or the visitor's anonymous id (unit: anonymous).
    unit: Mapped[str] = mapped_column(String(255))
    # The profile when known (a merged-away profile is followed to its survivor on reading).
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    # The unit's segments when first exposed, for the per-segment breakdown.
    segments: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    # decision (shown) | action (sent) | firing (would have been sent: a control, a holdout)
    source: Mapped[str] = mapped_column(String(16))
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    exposures: Mapped[int] = mapped_column(Integer, server_default="1")


Index(
    "ix_experiment_exposures_experiment_first",
    ExperimentExposure.experiment,
    ExperimentExposure.first_at,
)
Index("ix_experiment_exposures_customer", ExperimentExposure.customer_id)
