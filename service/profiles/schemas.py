from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, RootModel, StrictBool


class IdentityOut(BaseModel):
    kind: str
    # Email and phone are shown masked (a***@example.com); other ids as they are.
    value: str


class SpendOut(BaseModel):
    currency: str
    orders_count: int
    total_spent: str  # decimal string, never a float
    average_order_value: str


class RfmOut(BaseModel):
    recency: int
    frequency: int
    monetary: int
    computed_at: datetime


class ProductViewsOut(BaseModel):
    product_id: str
    views: int
    last_viewed_at: datetime


class ProfileOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    traits: dict[str, Any]
    identities: list[IdentityOut]
    orders_count: int
    spend: list[SpendOut]
    first_order_at: datetime | None
    last_order_at: datetime | None
    last_seen_at: datetime | None
    rfm: RfmOut | None
    product_views: list[ProductViewsOut]
    merged_from: list[uuid.UUID]


class EventOut(BaseModel):
    id: int
    source: str
    message_id: str
    type: str
    name: str | None
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any]
    context: dict[str, Any]


class EventsPage(BaseModel):
    events: list[EventOut]
    next_cursor: str | None


class ConsentIn(RootModel[dict[str, StrictBool]]):
    """Consent per purpose, e.g. `{"marketing": false}`; purposes not named keep theirs."""

    root: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], StrictBool] = Field(
        min_length=1, examples=[{"marketing": True}]
    )


class ConsentOut(BaseModel):
    consent: dict[str, bool] = Field(description="As stored; purposes not set use the defaults.")
    effective: dict[str, bool] = Field(description="With CONSENT_DEFAULTS for the others.")
