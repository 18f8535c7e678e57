"""Acts as the requests a storefront and a store platform send: Segment spec events
(for the Segment endpoints and the events API), and signed Shopify and WooCommerce
webhooks. Message ids are derived from the seed, so sending a store twice stores it
once (the second run counts duplicates)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from service.events.platforms.shopify import sign_shopify
from service.events.platforms.woocommerce import sign_woocommerce
from service.synthetic.behaviour import Act, Kind, Line
from service.synthetic.population import Customer

NAMESPACE = uuid.UUID("5b0c1a2e-7f7e-4d55-9a53-3d0c2b7e9a10")
COUPON = "SAVE10"


class Channel(StrEnum):
    SEGMENT = "segment"  # POST /v1/batch (Segment endpoints)
    EVENTS = "events"  # POST /v1/events (the events API)
    SHOPIFY = "shopify"  # POST /v1/webhooks/shopify
    WOOCOMMERCE = "woocommerce"  # POST /v1/webhooks/woocommerce


@dataclass(frozen=True)
class Webhook:
    channel: Channel
    topic: str
    path: str
    body: bytes
    headers: dict[str, str]


def message_id(act: Act, n: int = 0) -> str:
    c = act.customer
    key = f"{c.seed}/{c.index}/{act.session}/{act.kind}/{act.at.isoformat()}/{n}"
    return str(uuid.uuid5(NAMESPACE, key))


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _products(lines: tuple[Line, ...]) -> list[dict[str, Any]]:
    return [
        {
            "product_id": line.product.id,
            "sku": line.product.sku,
            "name": line.product.title,
            "category": line.product.category,
            "price": float(line.product.price),
            "quantity": line.quantity,
        }
        for line in lines
    ]


def storefront_channel(customer: Customer) -> Channel:
    return Channel.SEGMENT if customer.via_segment else Channel.EVENTS


def platform_handles(act: Act, *, live: bool) -> bool:
    """Whether the platform's webhook carries this act (live mode): Shopify sends
    checkouts, orders and refunds; WooCommerce orders and refunds (its checkout is a
    storefront event)."""
    if not live or act.kind not in (Kind.CHECKOUT, Kind.ORDER, Kind.REFUND):
        return False
    return not (act.customer.platform == "woocommerce" and act.kind == Kind.CHECKOUT)


def segment_event(act: Act, *, currency: str, sent_at: datetime | None = None) -> dict[str, Any]:
    """The act as a Segment spec message (track, page or identify), stamped with
    `sent_at` when given (live mode), its id always from the act itself."""
    c = act.customer
    who: dict[str, Any] = {"anonymousId": c.anonymous_id}
    if act.known:
        who["userId"] = c.user_id
    base = {
        **who,
        "messageId": message_id(act),
        "timestamp": _stamp(sent_at or act.at),
        "context": {"locale": c.locale, "timezone": c.timezone},
    }
    if act.kind == Kind.PAGE:
        return {**base, "type": "page", "name": "Home", "properties": {"path": "/"}}
    if act.kind == Kind.SIGN_IN:
        traits = {
            "email": c.email,
            "phone": c.phone,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "address": {"city": c.city, "country": c.country},
            "timezone": c.timezone,
            "locale": c.locale,
            "consent": {"marketing": c.marketing_consent},
        }
        return {**base, "type": "identify", "userId": c.user_id, "traits": traits}
    product = act.product
    if act.kind in (Kind.VIEW, Kind.ADD):
        assert product is not None
        properties: dict[str, Any] = {
            "product_id": product.id,
            "sku": product.sku,
            "name": product.title,
            "category": product.category,
            "price": float(product.price),
            "currency": currency,
        }
        if act.kind == Kind.ADD:
            properties |= {"cart_id": act.cart, "quantity": 1}
        name = "Product Viewed" if act.kind == Kind.VIEW else "Product Added"
        return {**base, "type": "track", "event": name, "properties": properties}
    order_properties: dict[str, Any] = {
        "products": _products(act.lines),
        "currency": currency,
        "total": float(act.total),
        "subtotal": float(act.subtotal),
        "discount": float(act.discount),
    }
    if act.discount:
        order_properties["coupon"] = COUPON
    if act.kind == Kind.CHECKOUT:
        properties = {"checkout_id": act.checkout, "cart_id": act.cart, **order_properties}
        return {**base, "type": "track", "event": "Checkout Started", "properties": properties}
    if act.kind == Kind.ORDER:
        properties = {
            "order_id": act.order,
            "checkout_id": act.checkout,
            "cart_id": act.cart,
            **order_properties,
        }
        return {**base, "type": "track", "event": "Order Completed", "properties": properties}
    assert act.kind == Kind.REFUND
    properties = {"order_id": act.order, "total": float(act.total), "currency": currency}
    return {**base, "type": "track", "event": "Order Refunded", "properties": properties}


# --- platform webhooks -----------------------------------------------------------------------


def webhook(
    act: Act,
    *,
    currency: str,
    secrets: dict[str, str],
    shop: str,
    sent_at: datetime | None = None,
) -> Webhook:
    """The platform's signed webhook for a checkout, an order or a refund, its times
    `sent_at` when given (live mode), its ids always from the act itself."""
    ids = act
    if sent_at is not None:
        act = replace(act, at=sent_at)
    if act.customer.platform == "shopify":
        topic, payload = _shopify(act, currency=currency)
        body = orjson.dumps(payload)
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign_shopify(body, secrets["shopify"]),
            "X-Shopify-Shop-Domain": f"{shop}.myshopify.com",
            "X-Shopify-Event-Id": message_id(ids, 1),
            "X-Shopify-Webhook-Id": message_id(ids, 2),
            "X-Shopify-Triggered-At": _stamp(act.at),
        }
        return Webhook(Channel.SHOPIFY, topic, "/v1/webhooks/shopify", body, headers)
    topic, payload = _woocommerce(act, currency=currency)
    body = orjson.dumps(payload)
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": sign_woocommerce(body, secrets["woocommerce"]),
        "X-WC-Webhook-Delivery-ID": message_id(ids, 1),
        "X-WC-Webhook-ID": "1",
        "X-WC-Webhook-Source": f"https://{shop}.example/",
    }
    return Webhook(Channel.WOOCOMMERCE, topic, "/v1/webhooks/woocommerce", body, headers)


def _shopify_customer(c: Customer) -> dict[str, Any]:
    return {
        "id": c.platform_id,
        "email": c.email,
        "phone": c.phone,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "email_marketing_consent": {
            "state": "subscribed" if c.marketing_consent else "not_subscribed"
        },
    }


def _shopify_lines(lines: tuple[Line, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": int(line.product.id) * 10 + i,
            "product_id": int(line.product.id),
            "variant_id": int(line.product.id) * 100 + 1,
            "sku": line.product.sku,
            "title": line.product.title,
            "price": _money(line.product.price),
            "quantity": line.quantity,
        }
        for i, line in enumerate(lines)
    ]


def _shopify(act: Act, *, currency: str) -> tuple[str, dict[str, Any]]:
    c, stamp = act.customer, act.at.isoformat()
    totals = {
        "currency": currency,
        "subtotal_price": _money(act.subtotal),
        "total_discounts": _money(act.discount),
        "total_price": _money(act.total),
        "total_tax": "0.00",
    }
    if act.kind == Kind.CHECKOUT:
        return "checkouts/create", {
            "token": act.checkout,
            "cart_token": act.cart,
            "email": c.email,
            "created_at": stamp,
            "updated_at": stamp,
            "customer": _shopify_customer(c),
            "line_items": _shopify_lines(act.lines),
            **totals,
        }
    if act.kind == Kind.ORDER:
        return "orders/create", {
            "id": int(act.order or 0),
            "checkout_token": act.checkout,
            "cart_token": act.cart,
            "email": c.email,
            "created_at": stamp,
            "processed_at": stamp,
            "updated_at": stamp,
            "financial_status": "paid",
            "fulfillment_status": None,
            "discount_codes": [{"code": COUPON}] if act.discount else [],
            "customer": _shopify_customer(c),
            "line_items": _shopify_lines(act.lines),
            **totals,
        }
    return "refunds/create", {
        "id": int(act.order or 0) * 10 + 1,
        "order_id": int(act.order or 0),
        "created_at": stamp,
        "processed_at": stamp,
        "refund_line_items": [
            {"quantity": line["quantity"], "line_item": line} for line in _shopify_lines(act.lines)
        ],
        "transactions": [
            {
                "kind": "refund",
                "status": "success",
                "amount": _money(act.total),
                "currency": currency,
            }
        ],
    }


def _woocommerce(act: Act, *, currency: str) -> tuple[str, dict[str, Any]]:
    c = act.customer
    naive = act.at.replace(tzinfo=None).isoformat(timespec="seconds")
    order = {
        "id": int(act.order or 0),
        "customer_id": c.platform_id,
        "currency": currency,
        "total": _money(act.total),
        "discount_total": _money(act.discount),
        "total_tax": "0.00",
        "shipping_total": "0.00",
        "date_created_gmt": naive,
        "date_modified_gmt": naive,
        "billing": {
            "first_name": c.first_name,
            "last_name": c.last_name,
            "email": c.email,
            "phone": c.phone,
            "city": c.city,
            "country": c.country,
        },
        "line_items": [
            {
                "id": i + 1,
                "product_id": int(line.product.id),
                "variation_id": 0,
                "sku": line.product.sku,
                "name": line.product.title,
                "price": float(line.product.price),
                "quantity": line.quantity,
            }
            for i, line in enumerate(act.lines)
        ],
        "coupon_lines": [{"code": COUPON}] if act.discount else [],
    }
    if act.kind == Kind.ORDER:
        return "order.created", {**order, "status": "processing"}
    refund = {"id": int(act.order or 0) * 10 + 1, "reason": "", "total": f"-{_money(act.total)}"}
    return "order.updated", {**order, "status": "refunded", "refunds": [refund]}
