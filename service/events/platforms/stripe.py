"""Stripe events (type in the body) mapped to canonical events."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from service.events.canonical import (
    ORDER_COMPLETED,
    ORDER_REFUNDED,
    CanonicalEvent,
    Identifiers,
    IgnoredTopic,
    MappingError,
)
from service.events.platforms.common import (
    Delivery,
    Mapper,
    Node,
    bounded,
    compact,
    ignored,
    money_text,
    root,
    run_table,
)

# ---------------------------------------------------------------------------- Stripe

# Stripe amounts are integers in the currency's minor unit. Exponent 2 unless listed
# (docs.stripe.com/currencies: zero-decimal and three-decimal currencies).
_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def _stripe_currency(obj: Node) -> str:
    currency = obj.text("currency")
    if currency is None:
        raise MappingError("missing currency", field=obj.field("currency"))
    return currency.upper()


def _stripe_money(obj: Node, key: str, currency: str) -> str | None:
    minor = obj.opt_int(key)  # a float here is not a Stripe amount: refuse it
    if minor is None:
        return None
    exponent = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    major = bounded(Decimal(minor).scaleb(-exponent), field=obj.field(key))
    return money_text(major)


def _stripe_required_money(obj: Node, key: str, currency: str) -> str:
    value = _stripe_money(obj, key, currency)
    if value is None:
        raise MappingError("missing amount", field=obj.field(key))
    return value


def _stripe_object(delivery: Delivery) -> Node:
    return delivery.body.child("data").child("object")


def _stripe_session_completed(delivery: Delivery) -> list[CanonicalEvent]:
    session = _stripe_object(delivery)
    currency = _stripe_currency(session)
    details = session.child_or_empty("customer_details")
    costs = session.child_or_empty("total_details")
    properties = {
        "order_id": session.id("id"),
        # charge.refunded names the payment intent, not the session: this joins them.
        "payment_intent": session.opt_id("payment_intent"),
        "total": _stripe_required_money(session, "amount_total", currency),
        "subtotal": _stripe_money(session, "amount_subtotal", currency),
        "tax": _stripe_money(costs, "amount_tax", currency),
        "shipping": _stripe_money(costs, "amount_shipping", currency),
        "discount": _stripe_money(costs, "amount_discount", currency),
        "currency": currency,
    }
    identifiers = Identifiers(
        platform_customer_id=session.opt_id("customer"),
        email=details.text("email") or session.text("customer_email"),
        phone=details.text("phone"),
    )
    return [
        delivery.event(
            name=ORDER_COMPLETED,
            occurred_at=delivery.body.unix_time("created"),
            identifiers=identifiers,
            properties=compact(properties),
        )
    ]


def _stripe_charge_refunded(delivery: Delivery) -> list[CanonicalEvent]:
    charge = _stripe_object(delivery)
    currency = _stripe_currency(charge)
    billing = charge.child_or_empty("billing_details")
    charge_id = charge.id("id")
    properties = {
        "order_id": charge.opt_id("payment_intent") or charge_id,
        "charge_id": charge_id,
        # Cumulative over all refunds of the charge, as Stripe reports it.
        "total": _stripe_required_money(charge, "amount_refunded", currency),
        "currency": currency,
        "cumulative": True,
    }
    identifiers = Identifiers(
        platform_customer_id=charge.opt_id("customer"),
        email=billing.text("email") or charge.text("receipt_email"),
        phone=billing.text("phone"),
    )
    return [
        delivery.event(
            name=ORDER_REFUNDED,
            occurred_at=delivery.body.unix_time("created"),
            identifiers=identifiers,
            properties=compact(properties),
        )
    ]


def _stripe_customer(delivery: Delivery) -> list[CanonicalEvent]:
    customer = _stripe_object(delivery)
    created = (
        customer.unix_time("created", when=False).isoformat() if customer.has("created") else None
    )
    identifiers = Identifiers(
        platform_customer_id=customer.id("id"),
        email=customer.text("email"),
        phone=customer.text("phone"),
    )
    return [
        delivery.event(
            type="identify",
            name=None,
            occurred_at=delivery.body.unix_time("created"),
            identifiers=identifiers,
            traits=compact({"name": customer.text("name"), "created_at": created}),
        )
    ]


STRIPE_TOPICS: Mapping[str, Mapper] = {
    "checkout.session.completed": _stripe_session_completed,
    # Abandonment is detected by rules from Checkout Started and the absence of an
    # order, the same way for every platform, not from a platform's expiry signal.
    "checkout.session.expired": ignored,
    "charge.refunded": _stripe_charge_refunded,
    "customer.created": _stripe_customer,
    "customer.updated": _stripe_customer,
}


def map_stripe(*, payload: dict[str, Any]) -> list[CanonicalEvent]:
    """Map one Stripe event: its topic is `type`, its delivery id the event `id`
    (`evt_…`), both in the body."""
    body = root(payload)
    topic = body.text("type")
    if topic is None:
        raise MappingError("missing event type", field="type")
    if topic not in STRIPE_TOPICS:
        raise IgnoredTopic(topic)
    return run_table(
        STRIPE_TOPICS, source="stripe", topic=topic, payload=payload, delivery_id=body.id("id")
    )
