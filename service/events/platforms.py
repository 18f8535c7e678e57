"""Webhook deliveries from e-commerce platforms, mapped to canonical events.

Pure functions: no database, no HTTP. Each platform has one table from topic to a small
mapper, so the table doubles as documentation (docs/webhooks.md mirrors it). A topic
missing from a table, or mapped to `_ignored`, raises `IgnoredTopic`: the delivery is
stored but produces no event. A payload lacking what its mapping needs raises
`MappingError` naming the dotted path of the field, and is quarantined.

Every event's message id is `f"{delivery_id}:{name or type}"`: a redelivery of the same
delivery maps to the same ids, which is what the event store dedupes on.

Money is read with `Decimal(str(value))` and emitted as a fixed-point decimal string
("29.35"); sums are done in `Decimal`, never in floats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from functools import partial
from typing import Any

from service.events.canonical import (
    CHECKOUT_STARTED,
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_REFUNDED,
    ORDER_UPDATED,
    PRODUCT_ADDED,
    PRODUCT_REMOVED,
    CanonicalEvent,
    EventType,
    Identifiers,
    IgnoredTopic,
    MappingError,
)

# Plain decimal notation only: `Decimal()` would also take "NaN", "Infinity", "1_000"
# and surrounding spaces, none of which is a price.
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Bounds keep formatting cheap ("1e999999999" would print a gigabyte) and sums exact
# under `_SUM_PRECISION`; real amounts are far inside them (WooCommerce's float
# prices carry up to 17 significant digits).
_MAX_ADJUSTED_EXPONENT = 15  # below 10**16
_MIN_EXPONENT = -28
_SUM_PRECISION = 100


@dataclass(frozen=True)
class _Node:
    """A JSON object and its dotted path from the payload root, so that every
    `MappingError` names the field it is about."""

    data: Mapping[str, Any]
    path: str = ""

    def field(self, key: str | int) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def child(self, key: str) -> _Node:
        node = self.opt_child(key)
        if node is None:
            raise MappingError("missing object", field=self.field(key))
        return node

    def opt_child(self, key: str) -> _Node | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise MappingError("expected an object", field=self.field(key))
        return _Node(value, self.field(key))

    def child_or_empty(self, key: str) -> _Node:
        """An optional object, as an empty one when absent: its fields read as None."""
        return self.opt_child(key) or _Node({}, self.field(key))

    def children(self, key: str) -> list[_Node]:
        """A list of objects; absent or null is an empty list."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise MappingError("expected a list", field=self.field(key))
        nodes = []
        for index, item in enumerate(value):
            path = f"{self.field(key)}.{index}"
            if not isinstance(item, Mapping):
                raise MappingError("expected an object", field=path)
            nodes.append(_Node(item, path))
        return nodes

    def id(self, key: str) -> str:
        value = self.opt_id(key)
        if value is None:
            raise MappingError("missing id", field=self.field(key))
        return value

    def opt_id(self, key: str) -> str | None:
        """An id sent as a string or an integer, returned as a string."""
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise MappingError("expected a string or integer id", field=self.field(key))
        return str(value)

    def text(self, key: str) -> str | None:
        """A string; absent, null and empty are all None."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MappingError("expected a string", field=self.field(key))
        return value or None

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise MappingError("expected an integer", field=self.field(key))
        return value

    def opt_bool(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise MappingError("expected true or false", field=self.field(key))
        return value

    def amount(self, key: str) -> Decimal:
        value = self.opt_amount(key)
        if value is None:
            raise MappingError("missing amount", field=self.field(key))
        return value

    def opt_amount(self, key: str) -> Decimal | None:
        value = self.data.get(key)
        return None if value is None else _parse_decimal(value, field=self.field(key))

    def money(self, key: str) -> str:
        return _money_text(self.amount(key))

    def opt_money(self, key: str) -> str | None:
        value = self.opt_amount(key)
        return None if value is None else _money_text(value)

    def iso_time(self, *keys: str, naive_is_utc: bool = False) -> datetime:
        """The first of `keys` present, as an aware UTC datetime."""
        for key in keys:
            if self.has(key):
                return _parse_iso(self.data[key], self.field(key), naive_is_utc=naive_is_utc)
        raise MappingError("missing timestamp", field=self.field(keys[0]))

    def unix_time(self, key: str) -> datetime:
        value = self.data.get(key)
        if value is None:
            raise MappingError("missing timestamp", field=self.field(key))
        return _parse_unix(value, self.field(key))


def _parse_decimal(value: object, *, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MappingError("expected a decimal number", field=field)
    text = str(value)  # a float's shortest repr: 89.99 reads as exactly "89.99"
    if not _DECIMAL_TEXT.fullmatch(text):
        raise MappingError("expected a decimal number", field=field)
    try:
        number = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid text
        raise MappingError("expected a decimal number", field=field) from exc
    return _bounded(number, field=field)


def _bounded(number: Decimal, *, field: str) -> Decimal:
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: the pattern admits no NaN or Infinity
    if number.adjusted() > _MAX_ADJUSTED_EXPONENT or exponent < _MIN_EXPONENT:
        raise MappingError("amount out of range", field=field)
    return number


def _money_text(number: Decimal) -> str:
    # Fixed point keeps the sender's scale ("10.00" stays "10.00") and never prints an
    # exponent; `copy_abs` turns "-0.00" into "0.00".
    return format(number.copy_abs() if number.is_zero() else number, "f")


def _sum(numbers: Iterable[Decimal]) -> Decimal:
    with localcontext(prec=_SUM_PRECISION):
        return sum(numbers, Decimal(0))


def _parse_iso(value: object, field: str, *, naive_is_utc: bool) -> datetime:
    if not isinstance(value, str):
        raise MappingError("expected an ISO 8601 timestamp", field=field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MappingError("expected an ISO 8601 timestamp", field=field) from exc
    if moment.tzinfo is None:
        if not naive_is_utc:
            raise MappingError("timestamp has no UTC offset", field=field)
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _parse_unix(value: object, field: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MappingError("expected a Unix timestamp in seconds", field=field)
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MappingError("timestamp out of range", field=field) from exc


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop absent values: an event states only what the payload said."""
    return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class _Delivery:
    source: str
    topic: str
    delivery_id: str
    body: _Node

    def event(
        self,
        *,
        type: EventType = "track",
        name: str | None,
        occurred_at: datetime,
        identifiers: Identifiers,
        properties: Mapping[str, Any] | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> CanonicalEvent:
        return CanonicalEvent(
            source=self.source,
            message_id=f"{self.delivery_id}:{name or type}",
            type=type,
            name=name,
            occurred_at=occurred_at,
            identifiers=identifiers,
            properties=dict(properties or {}),
            traits=dict(traits or {}),
            context=dict(context or {}),
        )


Mapper = Callable[[_Delivery], list[CanonicalEvent]]


def _ignored(delivery: _Delivery) -> list[CanonicalEvent]:
    raise IgnoredTopic(delivery.topic)


def _root(payload: object) -> _Node:
    # The signature says dict, but the body is whatever JSON the sender posted.
    if not isinstance(payload, Mapping):
        raise MappingError("payload is not a JSON object")
    return _Node(payload)


def _run(
    table: Mapping[str, Mapper], *, source: str, topic: str, payload: object, delivery_id: str
) -> list[CanonicalEvent]:
    mapper = table.get(topic, _ignored)
    return mapper(_Delivery(source, topic, delivery_id, _root(payload)))


# --------------------------------------------------------------------------- Shopify


def _shopify_product(line: _Node) -> dict[str, Any]:
    return _compact(
        {
            "product_id": line.opt_id("product_id"),
            "variant": line.opt_id("variant_id"),
            "sku": line.text("sku"),
            "name": line.text("title") or line.text("name"),
            "price": line.opt_money("price"),
            "quantity": line.opt_int("quantity"),
        }
    )


def _shopify_products(body: _Node) -> list[dict[str, Any]]:
    return [_shopify_product(line) for line in body.children("line_items")]


def _shopify_identifiers(body: _Node) -> Identifiers:
    """Orders and checkouts: the customer when there is one, and the cart token, which
    is also the anonymous id of the cart's own events, so the three join up."""
    customer = body.child_or_empty("customer")
    return Identifiers(
        anonymous_id=body.opt_id("cart_token"),
        platform_customer_id=customer.opt_id("id"),
        email=customer.text("email") or body.text("email") or body.text("contact_email"),
        phone=customer.text("phone") or body.text("phone"),
    )


def _shopify_line_value(line: _Node) -> Decimal:
    if line.has("line_price"):
        return line.amount("line_price")
    with localcontext(prec=_SUM_PRECISION):  # exact, as `_sum`
        return line.amount("price") * (line.opt_int("quantity") or 0)


def _shopify_cart_currency(lines: list[_Node]) -> str | None:
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


def _shopify_cart(delivery: _Delivery, *, time_key: str) -> list[CanonicalEvent]:
    # A cart webhook carries the whole cart, not the line that changed: one event with
    # every line, rather than one per line, which would repeat lines on each update.
    body = delivery.body
    token = body.id("token")
    lines = body.children("line_items")
    properties = {
        "cart_id": token,
        "products": _shopify_products(body),
        "value": _money_text(_sum(_shopify_line_value(line) for line in lines)),
        "currency": _shopify_cart_currency(lines),
    }
    return [
        delivery.event(
            name=PRODUCT_ADDED,
            occurred_at=body.iso_time(time_key),
            identifiers=Identifiers(anonymous_id=token),
            properties=_compact(properties),
        )
    ]


def _shopify_checkout(delivery: _Delivery, *, time_key: str) -> list[CanonicalEvent]:
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
            name=CHECKOUT_STARTED,
            occurred_at=body.iso_time(time_key),
            identifiers=_shopify_identifiers(body),
            properties=_compact(properties),
        )
    ]


def _shopify_shipping(body: _Node) -> str | None:
    shipping = body.opt_child("total_shipping_price_set")
    shop_money = shipping.opt_child("shop_money") if shipping else None
    return shop_money.opt_money("amount") if shop_money else None


def _shopify_order(
    delivery: _Delivery, *, name: str, time_keys: tuple[str, ...]
) -> list[CanonicalEvent]:
    body = delivery.body
    properties = _compact(
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


def _shopify_refund_transactions(body: _Node) -> list[_Node]:
    """Refund transactions that moved money: failed or pending attempts did not."""
    return [
        transaction
        for transaction in body.children("transactions")
        if transaction.text("kind") == "refund" and transaction.text("status") == "success"
    ]


def _single_currency(nodes: Iterable[_Node], key: str) -> str | None:
    codes = {node.text(key) for node in nodes}
    return codes.pop() if len(codes) == 1 else None  # None when unknown or mixed


def _shopify_refund(delivery: _Delivery) -> list[CanonicalEvent]:
    # The refunded total is the money returned (the transactions), not the refunded
    # lines' subtotal: a partial refund or a restocking fee makes them differ.
    body = delivery.body
    transactions = _shopify_refund_transactions(body)
    products = [
        {
            **_shopify_product(item.child_or_empty("line_item")),
            **_compact({"quantity": item.opt_int("quantity")}),
        }
        for item in body.children("refund_line_items")
    ]
    properties = {
        "order_id": body.id("order_id"),
        "refund_id": body.opt_id("id"),
        "total": _money_text(_sum(t.amount("amount") for t in transactions)),
        "currency": _single_currency(transactions, "currency"),
        "products": products,
    }
    return [
        delivery.event(
            name=ORDER_REFUNDED,
            occurred_at=body.iso_time("created_at", "processed_at"),
            # A refund payload names no customer: order_id is its only link to one.
            identifiers=Identifiers(),
            properties=_compact(properties),
        )
    ]


def _shopify_marketing_consent(body: _Node) -> bool | None:
    # `email_marketing_consent` replaced the deprecated `accepts_marketing`; only
    # "subscribed" is consent ("pending" is an unconfirmed double opt-in).
    consent = body.opt_child("email_marketing_consent")
    state = consent.text("state") if consent else None
    if state is not None:
        return state == "subscribed"
    return body.opt_bool("accepts_marketing")


def _shopify_tags(body: _Node) -> list[str] | None:
    tags = body.text("tags")  # one comma-separated string
    return None if tags is None else [tag.strip() for tag in tags.split(",") if tag.strip()]


def _shopify_customer(delivery: _Delivery, *, time_key: str) -> list[CanonicalEvent]:
    body = delivery.body
    created = body.iso_time("created_at").isoformat() if body.has("created_at") else None
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
            type="identify",
            name=None,
            occurred_at=body.iso_time(time_key),
            identifiers=identifiers,
            traits=_compact(traits),
        )
    ]


SHOPIFY_TOPICS: Mapping[str, Mapper] = {
    "carts/create": partial(_shopify_cart, time_key="created_at"),
    "carts/update": partial(_shopify_cart, time_key="updated_at"),
    "checkouts/create": partial(_shopify_checkout, time_key="created_at"),
    "checkouts/update": partial(_shopify_checkout, time_key="updated_at"),
    # Sent when a checkout completes or expires; abandonment is a rule over
    # Checkout Started without a later Order Completed, not an event.
    "checkouts/delete": _ignored,
    "orders/create": partial(_shopify_order, name=ORDER_COMPLETED, time_keys=("created_at",)),
    "orders/paid": partial(_shopify_order, name=ORDER_UPDATED, time_keys=("updated_at",)),
    "orders/updated": partial(_shopify_order, name=ORDER_UPDATED, time_keys=("updated_at",)),
    "orders/cancelled": partial(
        _shopify_order, name=ORDER_CANCELLED, time_keys=("cancelled_at", "updated_at")
    ),
    "refunds/create": _shopify_refund,
    "customers/create": partial(_shopify_customer, time_key="created_at"),
    "customers/update": partial(_shopify_customer, time_key="updated_at"),
}


def map_shopify(*, topic: str, payload: dict[str, Any], delivery_id: str) -> list[CanonicalEvent]:
    """Map one Shopify delivery (`X-Shopify-Topic`, body, `X-Shopify-Event-Id`)."""
    return _run(
        SHOPIFY_TOPICS, source="shopify", topic=topic, payload=payload, delivery_id=delivery_id
    )


# ----------------------------------------------------------------------- WooCommerce


def _woo_id(node: _Node, key: str) -> str | None:
    """WooCommerce writes 0 for "none": a guest customer, a product without variation."""
    value = node.opt_id(key)
    return None if value == "0" else value


def _woo_product(line: _Node) -> dict[str, Any]:
    return _compact(
        {
            "product_id": _woo_id(line, "product_id"),
            "variant": _woo_id(line, "variation_id"),
            "sku": line.text("sku"),
            "name": line.text("name"),
            "price": line.opt_money("price"),
            "quantity": line.opt_int("quantity"),
        }
    )


def _woo_identifiers(body: _Node) -> Identifiers:
    billing = body.child_or_empty("billing")
    return Identifiers(
        platform_customer_id=_woo_id(body, "customer_id"),
        email=billing.text("email"),
        phone=billing.text("phone"),
    )


def _woo_order_properties(body: _Node) -> dict[str, Any]:
    return _compact(
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


def _woo_order_created(delivery: _Delivery) -> list[CanonicalEvent]:
    body = delivery.body
    return [
        delivery.event(
            name=ORDER_COMPLETED,
            occurred_at=body.iso_time("date_created_gmt", naive_is_utc=True),
            identifiers=_woo_identifiers(body),
            properties=_woo_order_properties(body),
        )
    ]


def _woo_refund(delivery: _Delivery, *, occurred_at: datetime) -> CanonicalEvent | None:
    """Order Refunded for an order that has refunds, with their sum as a positive total.

    The payload is the order as it is now, so the total is cumulative over all refunds
    so far; `refund_ids` says which ones it covers."""
    body = delivery.body
    refunds = body.children("refunds")
    if not refunds and body.text("status") != "refunded":
        return None
    if refunds:
        total = _sum(refund.amount("total").copy_abs() for refund in refunds)
    else:  # fully refunded, refunds not listed: the whole order
        total = body.amount("total")
    properties = {
        "order_id": body.id("id"),
        "total": _money_text(total),
        "currency": body.text("currency"),
        "refund_ids": [refund.id("id") for refund in refunds],
        # The sum of all refunds so far, re-sent with every later update.
        "cumulative": True,
    }
    return delivery.event(
        name=ORDER_REFUNDED,
        occurred_at=occurred_at,
        identifiers=_woo_identifiers(body),
        properties=_compact(properties),
    )


def _woo_order_updated(delivery: _Delivery) -> list[CanonicalEvent]:
    body = delivery.body
    occurred_at = body.iso_time("date_modified_gmt", naive_is_utc=True)
    name = ORDER_CANCELLED if body.text("status") == "cancelled" else ORDER_UPDATED
    updated = delivery.event(
        name=name,
        occurred_at=occurred_at,
        identifiers=_woo_identifiers(body),
        properties=_woo_order_properties(body),
    )
    refunded = _woo_refund(delivery, occurred_at=occurred_at)
    return [updated] if refunded is None else [updated, refunded]


def _woo_customer(delivery: _Delivery, *, time_key: str) -> list[CanonicalEvent]:
    body = delivery.body
    billing = body.child_or_empty("billing")
    created = (
        body.iso_time("date_created_gmt", naive_is_utc=True).isoformat()
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
            type="identify",
            name=None,
            occurred_at=body.iso_time(time_key, naive_is_utc=True),
            identifiers=identifiers,
            traits=_compact(traits),
        )
    ]


# WooCommerce's `*_gmt` timestamps are UTC without an offset.
WOOCOMMERCE_TOPICS: Mapping[str, Mapper] = {
    "order.created": _woo_order_created,
    # Also sent on refunds: adds Order Refunded; status "cancelled" is Order Cancelled.
    "order.updated": _woo_order_updated,
    "order.deleted": _ignored,  # trashing an order is bookkeeping, not a customer action
    "order.restored": _ignored,
    "customer.created": partial(_woo_customer, time_key="date_created_gmt"),
    "customer.updated": partial(_woo_customer, time_key="date_modified_gmt"),
}


def map_woocommerce(
    *, topic: str, payload: dict[str, Any], delivery_id: str
) -> list[CanonicalEvent]:
    """Map one WooCommerce delivery (`X-WC-Webhook-Topic`, body,
    `X-WC-Webhook-Delivery-ID`)."""
    return _run(
        WOOCOMMERCE_TOPICS,
        source="woocommerce",
        topic=topic,
        payload=payload,
        delivery_id=delivery_id,
    )


# ---------------------------------------------------------------------------- Stripe

# Stripe amounts are integers in the currency's minor unit. Exponent 2 unless listed
# (docs.stripe.com/currencies: zero-decimal and three-decimal currencies).
_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def _stripe_currency(obj: _Node) -> str:
    currency = obj.text("currency")
    if currency is None:
        raise MappingError("missing currency", field=obj.field("currency"))
    return currency.upper()


def _stripe_money(obj: _Node, key: str, currency: str) -> str | None:
    minor = obj.opt_int(key)  # a float here is not a Stripe amount: refuse it
    if minor is None:
        return None
    exponent = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    major = _bounded(Decimal(minor).scaleb(-exponent), field=obj.field(key))
    return _money_text(major)


def _stripe_required_money(obj: _Node, key: str, currency: str) -> str:
    value = _stripe_money(obj, key, currency)
    if value is None:
        raise MappingError("missing amount", field=obj.field(key))
    return value


def _stripe_object(delivery: _Delivery) -> _Node:
    return delivery.body.child("data").child("object")


def _stripe_session_completed(delivery: _Delivery) -> list[CanonicalEvent]:
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
            properties=_compact(properties),
        )
    ]


def _stripe_charge_refunded(delivery: _Delivery) -> list[CanonicalEvent]:
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
            properties=_compact(properties),
        )
    ]


def _stripe_customer(delivery: _Delivery) -> list[CanonicalEvent]:
    customer = _stripe_object(delivery)
    created = customer.unix_time("created").isoformat() if customer.has("created") else None
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
            traits=_compact({"name": customer.text("name"), "created_at": created}),
        )
    ]


STRIPE_TOPICS: Mapping[str, Mapper] = {
    "checkout.session.completed": _stripe_session_completed,
    # Abandonment is detected by rules from Checkout Started and the absence of an
    # order, the same way for every platform, not from a platform's expiry signal.
    "checkout.session.expired": _ignored,
    "charge.refunded": _stripe_charge_refunded,
    "customer.created": _stripe_customer,
    "customer.updated": _stripe_customer,
}


def map_stripe(*, payload: dict[str, Any]) -> list[CanonicalEvent]:
    """Map one Stripe event: its topic is `type`, its delivery id the event `id`
    (`evt_…`), both in the body."""
    body = _root(payload)
    topic = body.text("type")
    if topic is None:
        raise MappingError("missing event type", field="type")
    if topic not in STRIPE_TOPICS:
        raise IgnoredTopic(topic)
    return _run(
        STRIPE_TOPICS, source="stripe", topic=topic, payload=payload, delivery_id=body.id("id")
    )


# --------------------------------------------------- Standard Webhooks: BigCommerce


def _bigcommerce_cart_id(data: _Node) -> str:
    # Line item scopes carry the line's id in `id` and the cart's in `cartId`.
    return data.id("cartId") if data.has("cartId") else data.id("id")


def _bigcommerce_event(
    delivery: _Delivery,
    *,
    name: str | None,
    identifiers: Identifiers,
    properties: Mapping[str, Any] | None = None,
    type: EventType = "track",
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


def _bigcommerce_cart(delivery: _Delivery, *, name: str) -> list[CanonicalEvent]:
    # Thin payload: the cart id is all there is; the lines stay at BigCommerce.
    cart_id = _bigcommerce_cart_id(delivery.body.child("data"))
    return _bigcommerce_event(
        delivery,
        name=name,
        identifiers=Identifiers(anonymous_id=f"bigcommerce-cart:{cart_id}"),
        properties={"cart_id": cart_id},
    )


def _bigcommerce_cart_converted(delivery: _Delivery) -> list[CanonicalEvent]:
    data = delivery.body.child("data")
    cart_id = data.id("id")
    return _bigcommerce_event(
        delivery,
        name=ORDER_COMPLETED,
        identifiers=Identifiers(anonymous_id=f"bigcommerce-cart:{cart_id}"),
        properties={"cart_id": cart_id, "order_id": data.id("orderId")},
    )


def _bigcommerce_order(delivery: _Delivery, *, name: str) -> list[CanonicalEvent]:
    data = delivery.body.child("data")
    status = data.opt_child("status")  # only on statusUpdated: numeric status ids
    properties = {
        "order_id": data.id("id"),
        "status_id": status.opt_int("new_status_id") if status else None,
        "previous_status_id": status.opt_int("previous_status_id") if status else None,
    }
    return _bigcommerce_event(
        delivery, name=name, identifiers=Identifiers(), properties=_compact(properties)
    )


def _bigcommerce_refund(delivery: _Delivery) -> list[CanonicalEvent]:
    data = delivery.body.child("data")
    refund = data.opt_child("refund")
    properties = {
        "order_id": data.id("id"),
        "refund_id": refund.opt_id("refund_id") if refund else None,
    }
    return _bigcommerce_event(
        delivery, name=ORDER_REFUNDED, identifiers=Identifiers(), properties=_compact(properties)
    )


def _bigcommerce_customer(delivery: _Delivery) -> list[CanonicalEvent]:
    customer_id = delivery.body.child("data").id("id")
    return _bigcommerce_event(
        delivery,
        type="identify",
        name=None,
        identifiers=Identifiers(platform_customer_id=customer_id),
    )


_bigcommerce_product_added = partial(_bigcommerce_cart, name=PRODUCT_ADDED)

# BigCommerce payloads are thin (type and id): the mapping stores what arrives and
# never calls the platform back for details. No order or refund scope names a customer.
BIGCOMMERCE_SCOPES: Mapping[str, Mapper] = {
    "store/cart/created": _bigcommerce_product_added,
    "store/cart/updated": _bigcommerce_product_added,
    "store/cart/lineItem/created": _bigcommerce_product_added,
    "store/cart/lineItem/updated": _bigcommerce_product_added,
    # A deleted line is the one cart change whose direction is known: Product Removed.
    "store/cart/lineItem/deleted": partial(_bigcommerce_cart, name=PRODUCT_REMOVED),
    "store/cart/converted": _bigcommerce_cart_converted,
    # Abandonment is a rule over cart events and the absence of an order.
    "store/cart/abandoned": _ignored,
    "store/order/created": partial(_bigcommerce_order, name=ORDER_COMPLETED),
    "store/order/updated": partial(_bigcommerce_order, name=ORDER_UPDATED),
    "store/order/statusUpdated": partial(_bigcommerce_order, name=ORDER_UPDATED),
    "store/order/refund/created": _bigcommerce_refund,
    "store/customer/created": _bigcommerce_customer,
    "store/customer/updated": _bigcommerce_customer,
}


# ------------------------------------------ Standard Webhooks: Segment-shaped bodies

_SEGMENT_TYPES: Mapping[str, EventType] = {"track": "track", "identify": "identify", "page": "page"}
# Segment sends money as numbers; the canonical event keeps it as decimal strings.
_SEGMENT_MONEY = ("total", "revenue", "subtotal", "tax", "shipping", "discount", "value", "price")


def _segment_money(node: _Node) -> dict[str, Any]:
    values = dict(node.data)
    for key in _SEGMENT_MONEY:
        if node.has(key):
            values[key] = node.money(key)
    return values


def _segment_properties(body: _Node) -> dict[str, Any]:
    properties = body.opt_child("properties")
    if properties is None:
        return {}
    values = _segment_money(properties)
    if properties.has("products"):
        values["products"] = [_segment_money(p) for p in properties.children("products")]
    return values


def _segment_identifiers(body: _Node) -> Identifiers:
    # As the events API reads a Segment call: contact data from traits, else from
    # context.traits.
    traits = body.child_or_empty("traits")
    context_traits = body.child_or_empty("context").child_or_empty("traits")
    identifiers = Identifiers(
        user_id=body.opt_id("userId"),
        anonymous_id=body.opt_id("anonymousId"),
        email=traits.text("email") or context_traits.text("email"),
        phone=traits.text("phone") or context_traits.text("phone"),
    )
    if identifiers.user_id is None and identifiers.anonymous_id is None:
        raise MappingError("a Segment event needs userId or anonymousId", field="userId")
    return identifiers


def _without(node: _Node, *keys: str) -> dict[str, Any]:
    return {key: value for key, value in node.data.items() if key not in keys}


def _segment_event(delivery: _Delivery) -> list[CanonicalEvent]:
    body = delivery.body
    type_ = _SEGMENT_TYPES[delivery.topic]
    name = {"track": body.text("event"), "page": body.text("name"), "identify": None}[type_]
    if type_ == "track" and name is None:
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
    body = _root(payload)
    scope = body.data.get("scope")
    if isinstance(scope, str) and scope.startswith("store/"):
        return _run(
            BIGCOMMERCE_SCOPES, source=source, topic=scope, payload=payload, delivery_id=delivery_id
        )
    kind = body.data.get("type")
    if isinstance(kind, str) and kind in SEGMENT_TYPES:
        return _run(
            SEGMENT_TYPES, source=source, topic=kind, payload=payload, delivery_id=delivery_id
        )
    raise IgnoredTopic(kind if isinstance(kind, str) and kind else "unknown")
