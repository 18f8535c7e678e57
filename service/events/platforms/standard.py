"""Standard Webhooks senders (`webhook-signature`, any configured source): BigCommerce
scopes, and bodies already shaped as Segment events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from service.events.canonical import (
    MONEY_FIELDS,
    CanonicalEvent,
    Identifiers,
    IgnoredTopic,
    MappingError,
)
from service.events.platform import COMMON_KEPT, json_field, required
from service.events.platforms.common import (
    Mapper,
    Node,
    Payload,
    compact,
    ignored,
    root,
    run_table,
)
from service.events.signatures import verify_standard_webhooks
from service.vocabulary import EventName, EventType

# --------------------------------------------------- Standard Webhooks: BigCommerce


def _bigcommerce_cart_id(data: Node) -> str:
    # Line item scopes carry the line's id in `id` and the cart's in `cartId`.
    return data.id("cartId") if data.has("cartId") else data.id("id")


def _bigcommerce_event(
    delivery: Payload,
    *,
    name: str | None,
    identifiers: Identifiers,
    properties: Mapping[str, Any] | None = None,
    type: EventType = EventType.TRACK,
) -> list[CanonicalEvent]:
    return [
        delivery.event(
            type=type,
            name=name,
            occurred_at=delivery.body.unix_time("created_at"),
            identifiers=identifiers,
            properties=properties,
        )
    ]


def _bigcommerce_cart(delivery: Payload, *, name: str) -> list[CanonicalEvent]:
    # Thin payload: the cart id is all there is; the lines stay at BigCommerce.
    cart_id = _bigcommerce_cart_id(delivery.body.child("data"))
    return _bigcommerce_event(
        delivery,
        name=name,
        identifiers=Identifiers(anonymous_id=f"bigcommerce-cart:{cart_id}"),
        properties={"cart_id": cart_id},
    )


def _bigcommerce_cart_converted(delivery: Payload) -> list[CanonicalEvent]:
    data = delivery.body.child("data")
    cart_id = data.id("id")
    return _bigcommerce_event(
        delivery,
        name=EventName.ORDER_COMPLETED,
        identifiers=Identifiers(anonymous_id=f"bigcommerce-cart:{cart_id}"),
        properties={"cart_id": cart_id, "order_id": data.id("orderId")},
    )


# BigCommerce's order status ids that end an order: 5 Cancelled, 6 Declined.
_BIGCOMMERCE_CANCELLED = frozenset({5, 6})


def _bigcommerce_order(delivery: Payload, *, name: str) -> list[CanonicalEvent]:
    data = delivery.body.child("data")
    status = data.opt_child("status")  # only on statusUpdated: numeric status ids
    if status and status.opt_int("new_status_id") in _BIGCOMMERCE_CANCELLED:
        name = EventName.ORDER_CANCELLED
    properties = {
        "order_id": data.id("id"),
        "status_id": status.opt_int("new_status_id") if status else None,
        "previous_status_id": status.opt_int("previous_status_id") if status else None,
    }
    return _bigcommerce_event(
        delivery, name=name, identifiers=Identifiers(), properties=compact(properties)
    )


def _bigcommerce_refund(delivery: Payload) -> list[CanonicalEvent]:
    data = delivery.body.child("data")
    refund = data.opt_child("refund")
    properties = {
        "order_id": data.id("id"),
        "refund_id": refund.opt_id("refund_id") if refund else None,
    }
    return _bigcommerce_event(
        delivery,
        name=EventName.ORDER_REFUNDED,
        identifiers=Identifiers(),
        properties=compact(properties),
    )


def _bigcommerce_customer(delivery: Payload) -> list[CanonicalEvent]:
    customer_id = delivery.body.child("data").id("id")
    return _bigcommerce_event(
        delivery,
        type=EventType.IDENTIFY,
        name=None,
        identifiers=Identifiers(platform_customer_id=customer_id),
    )


_bigcommerce_product_added = partial(_bigcommerce_cart, name=EventName.PRODUCT_ADDED)

# BigCommerce payloads are thin (type and id): the mapping stores what arrives and
# never calls the platform back for details. No order or refund scope names a customer.
BIGCOMMERCE_SCOPES: Mapping[str, Mapper] = {
    "store/cart/created": _bigcommerce_product_added,
    "store/cart/updated": _bigcommerce_product_added,
    "store/cart/lineItem/created": _bigcommerce_product_added,
    "store/cart/lineItem/updated": _bigcommerce_product_added,
    # A deleted line is the one cart change whose direction is known: Product Removed.
    "store/cart/lineItem/deleted": partial(_bigcommerce_cart, name=EventName.PRODUCT_REMOVED),
    "store/cart/converted": _bigcommerce_cart_converted,
    # Abandonment is a rule over cart events and the absence of an order.
    "store/cart/abandoned": ignored,
    "store/order/created": partial(_bigcommerce_order, name=EventName.ORDER_COMPLETED),
    "store/order/updated": partial(_bigcommerce_order, name=EventName.ORDER_UPDATED),
    "store/order/statusUpdated": partial(_bigcommerce_order, name=EventName.ORDER_UPDATED),
    "store/order/refund/created": _bigcommerce_refund,
    "store/customer/created": _bigcommerce_customer,
    "store/customer/updated": _bigcommerce_customer,
}


# ------------------------------------------ Standard Webhooks: Segment-shaped bodies

_SEGMENT_TYPES: Mapping[str, EventType] = {
    t: t for t in (EventType.TRACK, EventType.IDENTIFY, EventType.PAGE)
}
# Segment sends money as numbers; the canonical event keeps it as decimal strings.
_SEGMENT_MONEY = MONEY_FIELDS


def _segment_money(node: Node) -> dict[str, Any]:
    values = dict(node.data)
    for key in _SEGMENT_MONEY:
        if node.has(key):
            values[key] = node.money(key)
    return values


def _segment_properties(body: Node) -> dict[str, Any]:
    properties = body.opt_child("properties")
    if properties is None:
        return {}
    values = _segment_money(properties)
    # Contact data travels only as identifiers (hashed and encrypted there).
    values.pop("email", None)
    values.pop("phone", None)
    if properties.has("products"):
        values["products"] = [_segment_money(p) for p in properties.children("products")]
    return values


def _segment_identifiers(body: Node) -> Identifiers:
    # As the events API reads a Segment call: contact data from traits, else from
    # context.traits.
    traits = body.child_or_empty("traits")
    context_traits = body.child_or_empty("context").child_or_empty("traits")
    properties = body.child_or_empty("properties")
    identifiers = Identifiers(
        user_id=body.opt_id("userId"),
        anonymous_id=body.opt_id("anonymousId"),
        email=traits.text("email") or context_traits.text("email") or properties.text("email"),
        phone=traits.text("phone") or context_traits.text("phone") or properties.text("phone"),
    )
    if identifiers.user_id is None and identifiers.anonymous_id is None:
        raise MappingError("a Segment event needs userId or anonymousId", field="userId")
    return identifiers


def _without(node: Node, *keys: str) -> dict[str, Any]:
    return {key: value for key, value in node.data.items() if key not in keys}


def _segment_event(delivery: Payload) -> list[CanonicalEvent]:
    body = delivery.body
    type_ = _SEGMENT_TYPES[delivery.topic]
    name = {
        EventType.TRACK: body.text("event"),
        EventType.PAGE: body.text("name"),
        EventType.IDENTIFY: None,
    }[type_]
    if type_ == EventType.TRACK and name is None:
        raise MappingError("a track event needs an event name", field="event")
    return [
        delivery.event(
            type=type_,
            name=name,
            occurred_at=body.iso_time("timestamp"),
            identifiers=_segment_identifiers(body),
            properties=_segment_properties(body),
            # Contact data travels only in identifiers, never in JSONB; like the events
            # API, the context keeps neither its traits nor the IP address.
            traits=_without(body.child_or_empty("traits"), "email", "phone"),
            context=_without(body.child_or_empty("context"), "traits", "ip"),
        )
    ]


# A Standard Webhooks body that is already a Segment call maps to that call.
SEGMENT_TYPES: Mapping[str, Mapper] = dict.fromkeys(_SEGMENT_TYPES, _segment_event)


def map_standard(*, source: str, payload: dict[str, Any], delivery_id: str) -> list[CanonicalEvent]:
    """Map one Standard Webhooks delivery (`webhook-id` is the delivery id).

    BigCommerce bodies are recognised by their `store/…` scope; any other body that is
    already a Segment track, identify or page call is taken as that event. Anything
    else is an ignored topic, named by the body's `type` when it has one."""
    body = root(payload)
    scope = body.data.get("scope")
    if isinstance(scope, str) and scope.startswith("store/"):
        return run_table(
            BIGCOMMERCE_SCOPES, source=source, topic=scope, payload=payload, delivery_id=delivery_id
        )
    kind = body.data.get("type")
    if isinstance(kind, str) and kind in SEGMENT_TYPES:
        return run_table(
            SEGMENT_TYPES, source=source, topic=kind, payload=payload, delivery_id=delivery_id
        )
    raise IgnoredTopic(kind if isinstance(kind, str) and kind else "unknown")


class StandardWebhooks:
    """Any source not registered by name: its endpoint is `/v1/webhooks/{source}`."""

    name = "{source}"
    description = """Any sender using Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`; BigCommerce signs this way), deduplicated on `webhook-id`."""
    kept_headers = ("webhook-id", "webhook-timestamp", *COMMON_KEPT)

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], *, tolerance_s: int
    ) -> None:
        verify_standard_webhooks(body, headers, secrets, tolerance_s=tolerance_s)

    def ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def topic(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        return json_field(body, "scope", "type", "event")

    def delivery_key(self, body: bytes, headers: Mapping[str, str]) -> str:
        return required(headers, "webhook-id")

    def map(
        self, *, source: str, topic: str, payload: dict[str, Any], delivery_id: str
    ) -> list[CanonicalEvent]:
        return map_standard(source=source, payload=payload, delivery_id=delivery_id)


STANDARD = StandardWebhooks()
