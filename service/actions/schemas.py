from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.vocabulary import ActionStatus, FiringStatus

# Every status, as the API documents it: an inline enum of strings.
Status = Literal[
    ActionStatus.PENDING,
    ActionStatus.SENDING,
    ActionStatus.SENT,
    ActionStatus.CANCELLED,
    ActionStatus.DEAD,
]


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str = Field(
        description="sent, retry (failed, tried again), dead, or lost (the worker died)."
    )
    detail: str | None


class RuleRef(BaseModel):
    ruleset: str
    id: str
    version: int


class ActionOut(BaseModel):
    id: int
    customer_id: uuid.UUID
    rule: RuleRef
    event_id: int
    channel: str
    status: Status
    reason: str | None = Field(description="Why it was cancelled, deferred or retried.")
    last_error: str | None
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None = Field(description="When it is due, while it is pending.")
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] = Field(description="The rule's action, as rendered.")


class WaitOut(BaseModel):
    """A rule that matched and waits for its due time (`scheduled`), or that made no
    action: `cancelled` at its due time, or `suppressed` by its limits."""

    firing_id: int
    rule: RuleRef
    event_id: int
    status: Literal[FiringStatus.SCHEDULED, FiringStatus.CANCELLED, FiringStatus.SUPPRESSED]
    reason: str | None
    due_at: datetime
    decided_at: datetime | None
    guard: list[dict[str, Any]] | None = Field(
        description="What must stay absent until the due time: events, for the trigger's "
        "values (`same`), within the window."
    )
    cancel_on: list[str] | None = Field(description="Events that cancel it early.")


class ProfileActionsOut(BaseModel):
    actions: list[ActionOut]
    waiting: list[WaitOut]


class ActionsPage(BaseModel):
    items: list[ActionOut]
    next_after: int | None = Field(description="Pass as `after` for the next page.")
