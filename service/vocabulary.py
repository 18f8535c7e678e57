"""The words the domains share: event types and names, and the statuses of what they store.

One definition each, imported by every domain that speaks of them (a StrEnum member is
its string: it compares equal to it, and goes to the database and to JSON as it is).
A new word is added here, never spelled out again in a domain.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """The kinds of event of the Segment spec."""

    TRACK = "track"
    IDENTIFY = "identify"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


class EventName(StrEnum):
    """Names of track events the service itself emits or reads (Segment's e-commerce spec)."""

    PRODUCT_VIEWED = "Product Viewed"
    PRODUCT_ADDED = "Product Added"
    PRODUCT_REMOVED = "Product Removed"
    CART_VIEWED = "Cart Viewed"
    CHECKOUT_STARTED = "Checkout Started"
    ORDER_COMPLETED = "Order Completed"
    ORDER_UPDATED = "Order Updated"
    ORDER_CANCELLED = "Order Cancelled"
    ORDER_REFUNDED = "Order Refunded"
    # Emitted by the service when a customer's segment membership changes.
    SEGMENT_ENTERED = "Segment Entered"
    SEGMENT_LEFT = "Segment Left"


SEGMENT_EVENTS = frozenset({EventName.SEGMENT_ENTERED, EventName.SEGMENT_LEFT})
# The source of those events (stored with them like a platform's name).
SEGMENT_EVENT_SOURCE = "segments"


class IntakeStatus(StrEnum):
    """What became of one event sent to the events API."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class DeliveryStatus(StrEnum):
    """What became of one signed webhook delivery."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    QUARANTINED = "quarantined"
    PING = "ping"


class FiringStatus(StrEnum):
    """A rule firing: decided at once, or waiting for its due time."""

    SCHEDULED = "scheduled"  # waiting: re-checked at its due time
    FIRED = "fired"
    SUPPRESSED = "suppressed"  # matched, but held back by a limit or consent
    CANCELLED = "cancelled"  # the awaited absence did not hold
    SET_ASIDE = "set_aside"  # could not be decided; see the set-aside list


class ActionStatus(StrEnum):
    """An action on its way to a channel."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    DEAD = "dead"  # failed for good, or could not be processed


class DeploymentStatus(StrEnum):
    ACTIVE = "active"
    REJECTED = "rejected"


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    INBOX = "inbox"
