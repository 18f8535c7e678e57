"""WooCommerce webhooks: the signature (`X-WC-Webhook-Signature`), the unsigned creation
ping, and the topics (`X-WC-Webhook-Topic`) mapped to canonical events."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from service.events.canonical import CanonicalEvent, Identifiers
from service.events.platform import COMMON_KEPT, required
from service.events.platforms.common import (
    Mapper,
    Node,
    Payload,
    bounded,
    compact,
    decimal_sum,
    ignored,
    money_text,
    run_table,
)
from service.events.signatures import hmac_sha256, verify_base64_body_hmac
from service.vocabulary import EventName, EventType

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
# `webhook_id=` plus a WordPress post id: anything longer is not the ping.
_MAX_PING_BODY = 64
_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def _woo_id(node: Node, key: str) -> str | None:
    """WooCommerce writes 0 for "none": a guest customer, a product without variation."""
    value = node.opt_id(key)
    return None if value == "0" else value


def _woo_product(line: Node) -> dict[str, Any]:
    return compact(
        {
            "product_id": _woo_id(line, "product_id"),
            "variant": _woo_id(line, "variation_id"),
            "sku": line.text("sku"),
            "name": line.text("name"),
            "price": line.opt_money("price"),
            "quantity": line.opt_int("quantity"),
        }
    )


def _woo_identifiers(body: Node) -> Identifiers:
    billing = body.child_or_empty("billing")
    return Identifiers(
        platform_customer_id=_woo_id(body, "customer_id"),
        email=billing.text("email"),
        phone=billing.text("phone"),
    )


def _woo_order_properties(body: Node) -> dict[str, Any]:
    return compact(
        {
            "order_id": body.id("id"),
            "products": [_woo_product(line) for line in body.children("line_items")],
            "total": body.money("total"),
            "tax": body.opt_money("total_tax"),
            "shipping": body.opt_money("shipping_total"),
            "discount": body.opt_money("discount_total"),
            "currency": body.text("currency"),
            "status": body.text("status"),
        }
    )


def _woo_order_created(delivery: Payload) -> list[CanonicalEvent]:
    body = delivery.body
    return [
        delivery.event(
            name=EventName.ORDER_COMPLETED,
            occurred_at=body.iso_time("date_created_gmt", naive_is_utc=True),
            identifiers=_woo_identifiers(body),
            properties=_woo_order_properties(body),
        )
    ]


def _woo_refund(delivery: Payload, *, occurred_at: datetime) -> CanonicalEvent | None:
    """Order Refunded for an order that has refunds, with their sum as a positive total.

    The payload is the order as it is now, so the total is cumulative over all refunds
    so far; `refund_ids` says which ones it covers."""
    body = delivery.body
    refunds = body.children("refunds")
    if not refunds and body.text("status") != "refunded":
        return None
    if refunds:
        total = bounded(
            decimal_sum(refund.amount("total").copy_abs() for refund in refunds),
            field=body.field("refunds"),
        )
    else:  # fully refunded, refunds not listed: the whole order
        total = body.amount("total")
    properties = {
        "order_id": body.id("id"),
        "total": money_text(total),
        "currency": body.text("currency"),
        "refund_ids": [refund.id("id") for refund in refunds],
        # The sum of all refunds so far, re-sent with every later update.
        "cumulative": True,
    }
    return delivery.event(
        name=EventName.ORDER_REFUNDED,
        occurred_at=occurred_at,
        identifiers=_woo_identifiers(body),
        properties=compact(properties),
    )


def _woo_order_updated(delivery: Payload) -> list[CanonicalEvent]:
    body = delivery.body
    occurred_at = body.iso_time("date_modified_gmt", naive_is_utc=True)
    name = (
        EventName.ORDER_CANCELLED if body.text("status") == "cancelled" else EventName.ORDER_UPDATED
    )
    updated = delivery.event(
        name=name,
        occurred_at=occurred_at,
        identifiers=_woo_identifiers(body),
        properties=_woo_order_properties(body),
    )
    refunded = _woo_refund(delivery, occurred_at=occurred_at)
    return [updated] if refunded is None else [updated, refunded]


def _woo_customer(delivery: Payload, *, time_key: str) -> list[CanonicalEvent]:
    body = delivery.body
    billing = body.child_or_empty("billing")
    created = (
        body.iso_time("date_created_gmt", naive_is_utc=True, when=False).isoformat()
        if body.has("date_created_gmt")
        else None
    )
    traits = {
        "first_name": body.text("first_name"),
        "last_name": body.text("last_name"),
        "username": body.text("username"),
        "created_at": created,
    }
    identifiers = Identifiers(
        platform_customer_id=body.id("id"),
        email=body.text("email") or billing.text("email"),
        phone=billing.text("phone"),
    )
    return [
        delivery.event(
            type=EventType.IDENTIFY,
            name=None,
            occurred_at=body.iso_time(time_key, naive_is_utc=True),
            identifiers=identifiers,
            traits=compact(traits),
        )
    ]


# WooCommerce's `*_gmt` timestamps are UTC without an offset.
WOOCOMMERCE_TOPICS: Mapping[str, Mapper] = {
    "order.created": _woo_order_created,
    # Also sent on refunds: adds Order Refunded; status "cancelled" is Order Cancelled.
    "order.updated": _woo_order_updated,
    "order.deleted": ignored,  # trashing an order is bookkeeping, not a customer action
    "order.restored": ignored,
    "customer.created": partial(_woo_customer, time_key="date_created_gmt"),
    "customer.updated": partial(_woo_customer, time_key="date_modified_gmt"),
}


def map_woocommerce(
    *, topic: str, payload: dict[str, Any], delivery_id: str
) -> list[CanonicalEvent]:
    """Map one WooCommerce delivery (`X-WC-Webhook-Topic`, body,
    `X-WC-Webhook-Delivery-ID`)."""
    return run_table(
        WOOCOMMERCE_TOPICS,
        source="woocommerce",
        topic=topic,
        payload=payload,
        delivery_id=delivery_id,
    )


def sign_woocommerce(body: bytes, secret: str) -> str:
    """The `X-WC-Webhook-Signature` value WooCommerce sends for `body`."""
    return base64.b64encode(hmac_sha256(secret.encode(), body)).decode("ascii")


def verify_woocommerce(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Check `X-WC-Webhook-Signature` = base64(HMAC-SHA256(secret, body)) for any secret.

    The creation ping carries no signature at all: see `is_woocommerce_ping`.
    """
    verify_base64_body_hmac(body, headers, secrets, SIGNATURE_HEADER)


def is_woocommerce_ping(body: bytes, content_type: str | None) -> str | None:
    """The webhook id if `body` is WooCommerce's unsigned creation ping, else None.

    On creation WooCommerce POSTs the form `webhook_id=<digits>` with no X-WC headers
    and disables the webhook unless it gets HTTP 200. Only exactly that form passes
    (one field, digits, strict parsing); a `content_type` other than a form is refused,
    a missing one is tolerated. Checking that no X-WC-Webhook-Signature came along is
    the caller's job: this only looks at the body. The ping proves nothing about the
    sender, so answer 200 and do nothing else with it.
    """
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != _FORM_MEDIA_TYPE:
            return None
    if not body or len(body) > _MAX_PING_BODY:
        return None
    try:
        fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=1)
    except (UnicodeDecodeError, ValueError):  # bad field, or more than one field
        return None
    values = fields.get("webhook_id")
    if len(fields) != 1 or values is None or len(values) != 1:
        return None
    webhook_id = values[0]
    return webhook_id if webhook_id.isascii() and webhook_id.isdigit() else None


class WooCommerce:
    name = "woocommerce"
    description = """WooCommerce webhooks (`X-WC-Webhook-Signature`), deduplicated on
`X-WC-Webhook-Delivery-ID`. The unsigned ping sent when a webhook is created gets 200."""
    kept_headers = (
        "x-wc-webhook-source",
        "x-wc-webhook-topic",
        "x-wc-webhook-id",
        "x-wc-webhook-delivery-id",
        *COMMON_KEPT,
    )

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], *, tolerance_s: int
    ) -> None:
        verify_woocommerce(body, headers, secrets)

    def ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return SIGNATURE_HEADER.lower() not in headers and bool(
            is_woocommerce_ping(body, headers.get("content-type"))
        )

    def topic(self, body: bytes, headers: Mapping[str, str]) -> str:
        return required(headers, "X-WC-Webhook-Topic")

    def delivery_key(self, body: bytes, headers: Mapping[str, str]) -> str:
        return required(headers, "X-WC-Webhook-Delivery-ID")

    def map(
        self, *, source: str, topic: str, payload: dict[str, Any], delivery_id: str
    ) -> list[CanonicalEvent]:
        return map_woocommerce(topic=topic, payload=payload, delivery_id=delivery_id)


WOOCOMMERCE = WooCommerce()
