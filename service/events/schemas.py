"""The events API's shapes: Segment spec events, and the per-event results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.vocabulary import DeliveryStatus, EventType, IntakeStatus

Id = Field(default=None, min_length=1, max_length=255)


class ApiEvent(BaseModel):
    """One event as the Segment spec shapes it (extra fields such as `sentAt`,
    `integrations` or `version` are accepted and ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: EventType
    event: str | None = Field(default=None, min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    user_id: str | None = Field(default=None, alias="userId", min_length=1, max_length=255)
    anonymous_id: str | None = Field(
        default=None, alias="anonymousId", min_length=1, max_length=255
    )
    message_id: str | None = Field(default=None, alias="messageId", min_length=1, max_length=255)
    # group: the account the user belongs to; alias: the id the user had before.
    group_id: str | None = Field(default=None, alias="groupId", min_length=1, max_length=255)
    previous_id: str | None = Field(default=None, alias="previousId", min_length=1, max_length=255)
    timestamp: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _required(self) -> ApiEvent:
        if self.type == EventType.TRACK and not self.event:
            raise ValueError("a track event needs `event`, its name")
        if self.type == EventType.GROUP and not self.group_id:
            raise ValueError("a group event needs `groupId`")
        if self.type == EventType.ALIAS and not (self.previous_id and self.user_id):
            raise ValueError("an alias event needs `previousId` and `userId`")
        if not self.user_id and not self.anonymous_id:
            raise ValueError("an event needs `userId` or `anonymousId`")
        return self


class EventsBatch(BaseModel):
    """Up to 500 events (500 KB; 32 KB an event). Each is validated on its own: a bad
    event is rejected (and quarantined) without rejecting the batch."""

    batch: list[ApiEvent] = Field(min_length=1, max_length=500)


class EventResult(BaseModel):
    index: int
    message_id: str | None
    status: IntakeStatus
    reason: str | None = None
    field: str | None = None


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


class WebhookAck(BaseModel):
    status: DeliveryStatus
    events: int = 0


class QuarantineItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    topic: str | None
    reason: str
    field: str | None
    status: str
    received_at: datetime
    replayed_at: datetime | None
    payload: Any | None = Field(
        default=None,
        description="The input as kept, emails and phone numbers masked; a webhook's "
        "body stays on its delivery (null here).",
    )
    payload_omitted: bool = Field(
        default=False,
        description="The payload alone is larger than a page (QUARANTINE_PAGE_MAX_BYTES): "
        "`GET /v1/quarantine/{id}` shows it.",
    )


class ReplayResult(BaseModel):
    id: int
    status: str
    events: int
