"""The effects of events put on profiles: last seen, product views, traits, orders and
the spend they add up to. Each event is applied exactly once, when it is resolved."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from service.events.identity import IdentityKey
from service.profiles import effects_repository, repository
from service.vocabulary import EventName, EventType


@dataclass(frozen=True)
class PendingEvent:
    """A stored event waiting to be put on a profile."""

    id: int
    source: str
    message_id: str
    type: str
    name: str | None
    occurred_at: datetime
    properties: dict[str, Any]  # an identify's traits are its properties
    keys: list[IdentityKey]

    @property
    def traits(self) -> dict[str, Any]:
        return self.properties if self.type == EventType.IDENTIFY else {}


def apply(session: Session, events: Sequence[tuple[PendingEvent, uuid.UUID]]) -> None:
    """Apply newly stored events (each exactly once) to their profiles, oldest first."""
    ordered = sorted(events, key=lambda pair: pair[0].occurred_at)
    seen: dict[uuid.UUID, datetime] = {}
    views: dict[tuple[uuid.UUID, str], tuple[int, datetime]] = {}
    categories: dict[uuid.UUID, set[str]] = defaultdict(set)
    orders: list[dict[str, Any]] = []
    traits: dict[uuid.UUID, list[PendingEvent]] = defaultdict(list)

    for event, customer in ordered:
        seen[customer] = max(seen.get(customer, event.occurred_at), event.occurred_at)
        if event.traits:
            traits[customer].append(event)
        if event.name == EventName.PRODUCT_VIEWED and (
            product := event.properties.get("product_id")
        ):
            count, _ = views.get((customer, str(product)), (0, event.occurred_at))
            views[(customer, str(product))] = (count + 1, event.occurred_at)
        if event.name == EventName.PRODUCT_VIEWED and (
            category := category_of(event.properties.get("category"))
        ):
            categories[customer].add(category)
        if row := _order_row(event, customer):
            orders.append(row)

    effects_repository.touch_last_seen(session, seen)
    effects_repository.add_product_views(session, views)
    effects_repository.add_viewed_categories(session, categories)
    if traits:
        _apply_traits(session, traits)
    if orders:
        effects_repository.upsert_orders(session, orders)
        effects_repository.recompute_spend(session, {row["customer_id"] for row in orders})


def _apply_traits(session: Session, by_customer: dict[uuid.UUID, list[PendingEvent]]) -> None:
    customers = repository.customers_for_update(session, by_customer)
    for customer_id, events in by_customer.items():
        customer = customers[customer_id]
        values, times = dict(customer.traits), dict(customer.trait_times)
        for event in events:
            # Compared as text: always UTC, whatever the database session's time zone.
            at = event.occurred_at.astimezone(UTC).isoformat()
            for trait, value in event.traits.items():
                if at >= times.get(trait, ""):
                    values[trait], times[trait] = value, at
        customer.traits, customer.trait_times = values, times


# Events that carry the order itself (its products, discount): a refund's products are
# the refunded lines only.
_ORDER_CONTENT = frozenset(
    {EventName.ORDER_COMPLETED, EventName.ORDER_UPDATED, EventName.ORDER_CANCELLED}
)
MAX_CATEGORY = 100  # characters kept of a category name

_ORDER_STATUS: dict[str, str] = {
    EventName.ORDER_COMPLETED: "completed",
    EventName.ORDER_UPDATED: "updated",
    EventName.ORDER_CANCELLED: "cancelled",
    EventName.ORDER_REFUNDED: "refunded",
}


def _order_row(event: PendingEvent, customer: uuid.UUID) -> dict[str, Any] | None:
    status = _ORDER_STATUS.get(event.name or "")
    order_id = event.properties.get("order_id")
    if status is None or not order_id:
        return None
    props = event.properties
    if event.name == EventName.ORDER_UPDATED and props.get("status"):
        status = str(props["status"])[:32]
    amount = money(props.get("total", props.get("revenue")))
    currency = props.get("currency")
    refund = (amount or Decimal(0)) if event.name == EventName.ORDER_REFUNDED else Decimal(0)
    return {
        "source": event.source,
        "order_id": str(order_id),
        "customer_id": customer,
        "status": status,
        "status_at": event.occurred_at,
        "currency": str(currency).upper()[:3] if currency else None,
        "total": None if event.name == EventName.ORDER_REFUNDED else amount,
        "placed_at": event.occurred_at if event.name == EventName.ORDER_COMPLETED else None,
        "refunded": refund if not props.get("cumulative") else Decimal(0),
        "refunded_cumulative": refund if props.get("cumulative") else Decimal(0),
        "discounted": order_discounted(props) if event.name in _ORDER_CONTENT else None,
        "categories": order_categories(props) if event.name in _ORDER_CONTENT else None,
    }


def order_discounted(props: dict[str, Any]) -> bool | None:
    """Whether the order used a discount: an amount above 0 (`discount`, as every
    platform's mapping and the Segment spec give it) or a coupon code (`coupon`). None
    when the event says neither, so that an update without them keeps what was known."""
    if "discount" not in props and "coupon" not in props:
        return None
    amount = money(props.get("discount"))
    coupon = props.get("coupon")
    return bool(amount and amount > 0) or (isinstance(coupon, str) and bool(coupon.strip()))


def order_categories(props: dict[str, Any]) -> list[str] | None:
    """The categories of the order's products (Segment spec: `products[].category`),
    None when the event lists no products."""
    products = props.get("products")
    if not isinstance(products, list):
        return None
    found = {
        category
        for product in products
        if isinstance(product, dict) and (category := category_of(product.get("category")))
    }
    return sorted(found)


def category_of(value: Any) -> str | None:
    """A category as sent (compared exactly, case included), blanks around it dropped."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:MAX_CATEGORY]


def money(value: Any) -> Decimal | None:
    """A decimal amount from a string or a JSON number, never through float arithmetic."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None
