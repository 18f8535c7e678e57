"""Shopify HTTPS webhooks: the signature (`X-Shopify-Hmac-Sha256`), and the topics
(`X-Shopify-Topic`) mapped to canonical events."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, localcontext
from functools import partial
from typing import Any

from service.events.canonical import CanonicalEvent, Identifiers
from service.events.platform import COMMON_KEPT, required
from service.events.platforms.common import (
    SUM_PRECISION,
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

SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"


def _shopify_product(line: Node) -> dict[str, Any]:
    return compact(
        {
            "product_id": line.opt_id("product_id"),
            "variant": line.opt_id("variant_id"),
            "sku": line.text("sku"),
            "name": line.text("title") or line.text("name"),
            "price": line.opt_money("price"),
            "quantity": line.opt_int("quantity"),
        }
    )


def _shopify_products(body: Node) -> list[dict[str, Any]]:
    return [_shopify_product(line) for line in body.children("line_items")]


def _shopify_identifiers(body: Node) -> Identifiers:
    """Orders and checkouts: the customer when there is one, and the cart token, which
    is also the anonymous id of the cart's own events, so the three join up."""
    customer = body.child_or_empty("customer")
    return Identifiers(
        anonymous_id=body.opt_id("cart_token"),
        platform_customer_id=customer.opt_id("id"),
        email=customer.text("email") or body.text("email") or body.text("contact_email"),
        phone=customer.text("phone") or body.text("phone"),
    )


def _shopify_line_value(line: Node) -> Decimal:
    if line.has("line_price"):
        return line.amount("line_price")
    with localcontext(prec=SUM_PRECISION):  # exact, as `decimal_sum`
        return line.amount("price") * (line.opt_int("quantity") or 0)


def _shopify_cart_currency(lines: list[Node]) -> str | None:
    """The currency the cart's `line_price`s are in, when the payload ties it down.

    A cart has no top-level currency; each line's `line_price_set` gives the amount in
    the shop's and in the buyer's currency. A currency is certain only if its amount
    equals `line_price` on every line."""
    common: set[str] | None = None
    for line in lines:
        price = line.opt_amount("line_price")
        prices = line.child_or_empty("line_price_set")
        found = set()
        for side in ("shop_money", "presentment_money"):
            money = prices.opt_child(side)
            code = money.text("currency_code") if money else None
            if money and code and price is not None and money.opt_amount("amount") == price:
                found.add(code)
        common = found if common is None else common & found
    return next(iter(common)) if common and len(common) == 1 else None


def _shopify_cart(delivery: Payload, *, time_key: str) -> list[CanonicalEvent]:
    # A cart webhook carries the whole cart, not the line that changed: one event with
    # every line, rather than one per line, which would repeat lines on each update.
    body = delivery.body
    token = body.id("token")
    lines = body.children("line_items")
    properties = {
        "cart_id": token,
        "products": _shopify_products(body),
        "value": money_text(
            bounded(
                decimal_sum(_shopify_line_value(line) for line in lines),
                field=body.field("line_items"),
            )
        ),
        "currency": _shopify_cart_currency(lines),
    }
    return [
        delivery.event(
            name=EventName.PRODUCT_ADDED,
            occurred_at=body.iso_time(time_key),
            identifiers=Identifiers(anonymous_id=token),
            properties=compact(properties),
        )
    ]


def _shopify_checkout(delivery: Payload, *, time_key: str) -> list[CanonicalEvent]:
    body = delivery.body
    properties = {
        "checkout_id": body.id("token"),
        "cart_id": body.opt_id("cart_token"),
        "products": _shopify_products(body),
        "total": body.opt_money("total_price"),
        "subtotal": body.opt_money("subtotal_price"),
        "tax": body.opt_money("total_tax"),
        "discount": body.opt_money("total_discounts"),
        "currency": body.text("currency"),
        "url": body.text("abandoned_checkout_url"),
    }
    return [
        delivery.event(
            name=EventName.CHECKOUT_STARTED,
            occurred_at=body.iso_time(time_key),
            identifiers=_shopify_identifiers(body),
            properties=compact(properties),
        )
    ]


def _shopify_shipping(body: Node) -> str | None:
    shipping = body.opt_child("total_shipping_price_set")
    shop_money = shipping.opt_child("shop_money") if shipping else None
    return shop_money.opt_money("amount") if shop_money else None


def _shopify_order(
    delivery: Payload, *, name: str, time_keys: tuple[str, ...]
) -> list[CanonicalEvent]:
    body = delivery.body
    properties = compact(
        {
            "order_id": body.id("id"),
            # An order's checkout_token is the `token` that Checkout Started used as its
            # checkout_id.
            "checkout_id": body.opt_id("checkout_token"),
            "cart_id": body.opt_id("cart_token"),
            "products": _shopify_products(body),
            "total": body.money("total_price"),
            "subtotal": body.opt_money("subtotal_price"),
            "tax": body.opt_money("total_tax"),
            "shipping": _shopify_shipping(body),
            "discount": body.opt_money("total_discounts"),
            "currency": body.text("currency"),
            "cancel_reason": body.text("cancel_reason"),
        }
    )
    # Statuses stay even when null: an unfulfilled order has fulfillment_status null.
    properties["financial_status"] = body.text("financial_status")
    properties["fulfillment_status"] = body.text("fulfillment_status")
    return [
        delivery.event(
            name=name,
            occurred_at=body.iso_time(*time_keys),
            identifiers=_shopify_identifiers(body),
            properties=properties,
        )
    ]


def _shopify_refund_transactions(body: Node) -> list[Node]:
    """Refund transactions that moved money: failed or pending attempts did not."""
    return [
        transaction
        for transaction in body.children("transactions")
        if transaction.text("kind") == "refund" and transaction.text("status") == "success"
    ]


def _single_currency(nodes: Iterable[Node], key: str) -> str | None:
    codes = {node.text(key) for node in nodes}
    return codes.pop() if len(codes) == 1 else None  # None when unknown or mixed


def _shopify_refund(delivery: Payload) -> list[CanonicalEvent]:
    # The refunded total is the money returned (the transactions), not the refunded
    # lines' subtotal: a partial refund or a restocking fee makes them differ.
    body = delivery.body
    transactions = _shopify_refund_transactions(body)
    products = [
        {
            **_shopify_product(item.child_or_empty("line_item")),
            **compact({"quantity": item.opt_int("quantity")}),
        }
        for item in body.children("refund_line_items")
    ]
    properties = {
        "order_id": body.id("order_id"),
        "refund_id": body.opt_id("id"),
        "total": money_text(
            bounded(
                decimal_sum(t.amount("amount") for t in transactions),
                field=body.field("transactions"),
            )
        ),
        "currency": _single_currency(transactions, "currency"),
        "products": products,
    }
    return [
        delivery.event(
            name=EventName.ORDER_REFUNDED,
            occurred_at=body.iso_time("created_at", "processed_at"),
            # A refund payload names no customer: order_id is its only link to one.
            identifiers=Identifiers(),
            properties=compact(properties),
        )
    ]


def _shopify_marketing_consent(body: Node) -> bool | None:
    # `email_marketing_consent` replaced the deprecated `accepts_marketing`; only
    # "subscribed" is consent ("pending" is an unconfirmed double opt-in).
    consent = body.opt_child("email_marketing_consent")
    state = consent.text("state") if consent else None
    if state is not None:
        return state == "subscribed"
    return body.opt_bool("accepts_marketing")


def _shopify_tags(body: Node) -> list[str] | None:
    tags = body.text("tags")  # one comma-separated string
    return None if tags is None else [tag.strip() for tag in tags.split(",") if tag.strip()]


def _shopify_customer(delivery: Payload, *, time_key: str) -> list[CanonicalEvent]:
    body = delivery.body
    created = (
        body.iso_time("created_at", when=False).isoformat() if body.has("created_at") else None
    )
    traits = {
        "first_name": body.text("first_name"),
        "last_name": body.text("last_name"),
        "marketing_consent": _shopify_marketing_consent(body),
        "orders_count": body.opt_int("orders_count"),
        "tags": _shopify_tags(body),
        "created_at": created,
    }
    identifiers = Identifiers(
        platform_customer_id=body.id("id"), email=body.text("email"), phone=body.text("phone")
    )
    return [
        delivery.event(
            type=EventType.IDENTIFY,
            name=None,
            occurred_at=body.iso_time(time_key),
            identifiers=identifiers,
            traits=compact(traits),
        )
    ]


SHOPIFY_TOPICS: Mapping[str, Mapper] = {
    "carts/create": partial(_shopify_cart, time_key="created_at"),
    "carts/update": partial(_shopify_cart, time_key="updated_at"),
    "checkouts/create": partial(_shopify_checkout, time_key="created_at"),
    "checkouts/update": partial(_shopify_checkout, time_key="updated_at"),
    # Sent when a checkout completes or expires; abandonment is a rule over
    # Checkout Started without a later Order Completed, not an event.
    "checkouts/delete": ignored,
    "orders/create": partial(
        _shopify_order, name=EventName.ORDER_COMPLETED, time_keys=("created_at",)
    ),
    "orders/paid": partial(_shopify_order, name=EventName.ORDER_UPDATED, time_keys=("updated_at",)),
    "orders/updated": partial(
        _shopify_order, name=EventName.ORDER_UPDATED, time_keys=("updated_at",)
    ),
    "orders/cancelled": partial(
        _shopify_order, name=EventName.ORDER_CANCELLED, time_keys=("cancelled_at", "updated_at")
    ),
    "refunds/create": _shopify_refund,
    "customers/create": partial(_shopify_customer, time_key="created_at"),
    "customers/update": partial(_shopify_customer, time_key="updated_at"),
}


def map_shopify(*, topic: str, payload: dict[str, Any], delivery_id: str) -> list[CanonicalEvent]:
    """Map one Shopify delivery (`X-Shopify-Topic`, body, `X-Shopify-Event-Id`)."""
    return run_table(
        SHOPIFY_TOPICS, source="shopify", topic=topic, payload=payload, delivery_id=delivery_id
    )


def sign_shopify(body: bytes, secret: str) -> str:
    """The `X-Shopify-Hmac-Sha256` value Shopify sends for `body`."""
    return base64.b64encode(hmac_sha256(secret.encode(), body)).decode("ascii")


def verify_shopify(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Check `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(secret, body)) for any secret.

    Shopify signs no timestamp, so there is no replay window here: dedupe on
    `X-Shopify-Event-Id` instead.
    """
    verify_base64_body_hmac(body, headers, secrets, SIGNATURE_HEADER)


class Shopify:
    name = "shopify"
    description = """Shopify HTTPS webhooks (`X-Shopify-Hmac-Sha256`). Deduplicated on the topic and
`X-Shopify-Event-Id`."""
    kept_headers = (
        "x-shopify-topic",
        "x-shopify-shop-domain",
        "x-shopify-api-version",
        "x-shopify-webhook-id",
        "x-shopify-event-id",
        "x-shopify-triggered-at",
        *COMMON_KEPT,
    )

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str], *, tolerance_s: int
    ) -> None:
        verify_shopify(body, headers, secrets)

    def ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def topic(self, body: bytes, headers: Mapping[str, str]) -> str:
        return required(headers, "X-Shopify-Topic")

    def delivery_key(self, body: bytes, headers: Mapping[str, str]) -> str:
        return f"{self.topic(body, headers)}:{required(headers, 'X-Shopify-Event-Id')}"

    def map(
        self, *, source: str, topic: str, payload: dict[str, Any], delivery_id: str
    ) -> list[CanonicalEvent]:
        return map_shopify(topic=topic, payload=payload, delivery_id=delivery_id)


SHOPIFY = Shopify()
