"""Rule and segment file versions, kept with their text, and the deployments that
activate a set of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.vocabulary import DeploymentStatus


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
    origin: Mapped[str] = mapped_column(String(16))  # startup|watch|api|cli|publish|rollback
    status: Mapped[str] = mapped_column(String(16))  # active | rejected
    # Hash over the files read (None for a rollback): an unchanged directory is a no-op.
    files_hash: Mapped[str | None] = mapped_column(String(64))
    version_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    note: Mapped[str | None] = mapped_column(Text)
    # What `rules publish` checked before activating: the tests, the changes against
    # what was live, and the backtest (service/rules/publish.py). None otherwise.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


Index(
    "ix_rule_deployments_active",
    RuleDeployment.id,
    postgresql_where=RuleDeployment.status == DeploymentStatus.ACTIVE,
)
