"""Stripe webhooks: the signature (`Stripe-Signature`, with a timestamp), and the
events (type in the body) mapped to canonical events."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from service.events.canonical import (
    CanonicalEvent,
    Identifiers,
    IgnoredTopic,
    MappingError,
)
from service.events.platform import COMMON_KEPT, json_field
from service.events.platforms.common import (
    Mapper,
    Node,
    Payload,
    bounded,
    compact,
    ignored,
    money_text,
    root,
    run_table,
)
from service.events.signatures import (
    DEFAULT_TOLERANCE_S,
    SignatureError,
    any_match,
    check_timestamp,
    checked,
    header,
    is_timestamp,
)
from service.vocabulary import EventName, EventType

SIGNATURE_HEADER = "Stripe-Signature"

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


def _stripe_object(delivery: Payload) -> Node:
    return delivery.body.child("data").child("object")


def _stripe_session_completed(delivery: Payload) -> list[CanonicalEvent]:
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
            name=EventName.ORDER_COMPLETED,
            occurred_at=delivery.body.unix_time("created"),
            identifiers=identifiers,
            properties=compact(properties),
        )
    ]


def _stripe_charge_refunded(delivery: Payload) -> list[CanonicalEvent]:
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
            name=EventName.ORDER_REFUNDED,
            occurred_at=delivery.body.unix_time("created"),
            identifiers=identifiers,
            properties=compact(properties),
        )
    ]


def _stripe_customer(delivery: Payload) -> list[CanonicalEvent]:
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
            type=EventType.IDENTIFY,
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


def sign_stripe(body: bytes, secret: str, timestamp: int) -> str:
    """The full `Stripe-Signature` value (`t=…,v1=…`); the `whsec_` secret is the key as-is."""
    return f"t={timestamp},v1={_stripe_hex(secret.encode(), str(timestamp), body)}"


def verify_stripe(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Check `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`.

    Signed payload: f"{t}." + body; key: the endpoint secret `whsec_…` as UTF-8, NOT
    base64-decoded (unlike Standard Webhooks). Any `v1` matching any secret is enough;
    other schemes (`v0`) are ignored. Unlike stripe-python, which only rejects old
    timestamps, `t` more than `tolerance_s` in the future is rejected too: a clock that
    far off would otherwise stretch the replay window.
    """
    keys = [secret.encode() for secret in checked(secrets)]
    timestamp, signatures = _parse_stripe_header(header(headers, SIGNATURE_HEADER))
    check_timestamp(timestamp, now, tolerance_s)
    expected = [_stripe_hex(key, timestamp, body).encode("ascii") for key in keys]
    if not any_match(expected, signatures):
        raise SignatureError("signature does not match")


def _stripe_hex(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _parse_stripe_header(value: str) -> tuple[str, list[bytes]]:
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for item in value.split(","):
        key, _, field = item.strip().partition("=")
        if key == "t":
            timestamps.append(field)
        elif key == "v1":
            signatures.append(field.encode("utf-8", "replace"))
    if len(timestamps) != 1 or not is_timestamp(timestamps[0]):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: needs one numeric t=")
    if not signatures:
        raise SignatureError(f"no v1 signature in {SIGNATURE_HEADER} header")
    return timestamps[0], signatures


class Stripe:
    name = "stripe"
    description = """Stripe webhooks (`Stripe-Signature`, 5-minute tolerance), deduplicated on the
event id in the body."""
    kept_headers = COMMON_KEPT

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], *, tolerance_s: int
    ) -> None:
        verify_stripe(body, headers, secrets, tolerance_s=tolerance_s)

    def ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def topic(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        return json_field(body, "type")

    def delivery_key(self, body: bytes, headers: Mapping[str, str]) -> str:
        return json_field(body, "id") or "sha256:" + hashlib.sha256(body).hexdigest()

    def map(
        self, *, source: str, topic: str, payload: dict[str, Any], delivery_id: str
    ) -> list[CanonicalEvent]:
        return map_stripe(payload=payload)


STRIPE = Stripe()
