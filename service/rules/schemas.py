from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator


class RuleOut(BaseModel):
    id: str
    description: str
    version: int
    enabled: bool
    priority: int
    trigger: str
    group: str | None


class RulesetOut(BaseModel):
    name: str
    version: int = Field(description="The file's own `version:` field.")
    version_id: int = Field(description="The recorded version; pass it to rollback.")
    content_hash: str
    file: str
    first_loaded_at: datetime
    rules: list[RuleOut]


class RulesOut(BaseModel):
    deployment_id: int | None
    activated_at: datetime | None
    origin: str | None
    rulesets: list[RulesetOut]


class RuleErrorOut(BaseModel):
    file: str
    line: int | None
    message: str


class DeploymentOut(BaseModel):
    id: int
    created_at: datetime
    origin: str
    status: str = Field(description="`active` or `rejected` (nothing changed).")
    version_ids: list[int]
    errors: list[RuleErrorOut]
    note: str | None


class StatusOut(BaseModel):
    active: DeploymentOut | None
    last_attempt: DeploymentOut | None = Field(
        description="The newest reload or rollback, whether it was activated or rejected."
    )
    healthy: bool = Field(description="False while the newest change to the files is rejected.")
    rejected_total: int


class ReloadOut(BaseModel):
    status: str = Field(description="`active` (a new deployment) or `unchanged`.")
    deployment_id: int | None


class RollbackIn(BaseModel):
    deployment_id: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="Activate this deployment again."
    )
    version_id: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="Put back this version of one ruleset, keeping the others.",
    )

    @model_validator(mode="after")
    def _one(self) -> RollbackIn:
        if (self.deployment_id is None) == (self.version_id is None):
            raise ValueError("give either deployment_id or version_id")
        return self


class VersionOut(BaseModel):
    id: int
    name: str
    version: int
    content_hash: str
    file: str
    first_loaded_at: datetime


class FiringOut(BaseModel):
    id: int
    event_id: int
    customer_id: uuid.UUID
    ruleset: str
    rule_id: str
    rule_version: int
    version_id: int
    decided_version_id: int | None
    status: str = Field(description="scheduled, fired, cancelled or suppressed.")
    reason: str | None
    limits_group: str | None
    facts: dict[str, Any]
    actions: list[dict[str, Any]]
    due_at: datetime
    created_at: datetime
    decided_at: datetime | None


class FiringsPage(BaseModel):
    items: list[FiringOut]
    next_before: int | None = Field(description="Pass as `before` for the next page.")
