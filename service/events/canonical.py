"""The canonical event every source is mapped to (Segment spec, e-commerce v2 names).

Webhook mappers and the events API both produce `CanonicalEvent`s; the profile store
consumes only these. Money stays a decimal string ("29.35") with its currency: never a
float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.vocabulary import EventName, EventType

# Segment e-commerce v2 event names the service understands.
ECOMMERCE_EVENTS = frozenset(
    {
        EventName.PRODUCT_VIEWED,
        EventName.PRODUCT_ADDED,
        EventName.PRODUCT_REMOVED,
        EventName.CART_VIEWED,
        EventName.CHECKOUT_STARTED,
        EventName.ORDER_COMPLETED,
        EventName.ORDER_UPDATED,
        EventName.ORDER_REFUNDED,
        EventName.ORDER_CANCELLED,
    }
)

# Properties that carry money, on an event and on each of its `products` (Segment's
# e-commerce spec). Intake refuses a value there that is not a decimal amount within
# the money bound (`platforms.common.MAX_AMOUNT`).
MONEY_FIELDS = ("total", "revenue", "subtotal", "tax", "shipping", "discount", "value", "price")


@dataclass(frozen=True)
class Identifiers:
    """Everything in an event that can tie it to a customer. Raw values: the profile
    store normalises and hashes email and phone before storing or matching them."""

    user_id: str | None = None  # the sender's own customer id (Segment `userId`)
    anonymous_id: str | None = None  # device / browser id (Segment `anonymousId`)
    email: str | None = None
    phone: str | None = None
    platform_customer_id: str | None = None  # the platform's customer id, e.g. Shopify's
    loyalty_number: str | None = None

    def is_empty(self) -> bool:
        return not any(
            (
                self.user_id,
                self.anonymous_id,
                self.email,
                self.phone,
                self.platform_customer_id,
                self.loyalty_number,
            )
        )


@dataclass(frozen=True)
class CanonicalEvent:
    source: str  # "api", "shopify", "woocommerce", "stripe", or a Standard Webhooks source
    message_id: str  # unique within the source: a redelivery carries the same id
    type: EventType
    name: str | None  # e-commerce v2 name for `track`; page name for `page`; None for identify
    occurred_at: datetime  # timezone-aware, from the payload
    identifiers: Identifiers
    properties: dict[str, Any] = field(default_factory=dict)
    # Profile traits an identify (or a customer webhook) sets. Never email or phone:
    # those travel in `identifiers` only, so raw contact data never lands in JSONB.
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


class MappingError(ValueError):
    """A payload that cannot be turned into canonical events: kept in quarantine."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class IgnoredTopic(Exception):
    """A valid delivery on a topic the service does not use: stored, not mapped."""
