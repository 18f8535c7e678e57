from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

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
    summary: dict[str, Any] | None = Field(
        default=None,
        description="For `rules publish`: its tests (passed, failed, untested files), the "
        "changes against the deployment it replaced (`compared_with`), and the backtest "
        "(period, events, customers per rule with the files and live).",
    )


class FileStateOut(BaseModel):
    file: str = Field(description="Relative to RULES_DIR, e.g. `segments/vip.yaml`.")
    state: Literal["same", "changed", "only on disk", "only live"]


class StatusOut(BaseModel):
    active: DeploymentOut | None
    last_attempt: DeploymentOut | None = Field(
        description="The newest reload or rollback, whether it was activated or rejected."
    )
    healthy: bool = Field(description="False while the newest change to the files is rejected.")
    rejected_total: int
    files_live: bool = Field(
        description="Whether the rule and segment files in this API's RULES_DIR are "
        "exactly what is live (false after a rollback, or while a draft waits to be published)."
    )
    files: list[FileStateOut] = Field(
        description="Each file on disk or live, beside the other (email templates are not "
        "deployed and not listed)."
    )


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
