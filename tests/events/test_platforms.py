"""Webhook payloads from tests/fixtures/webhooks/ mapped to canonical events. Pure: no
database, no HTTP."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.events.canonical import (
    ECOMMERCE_EVENTS,
    CanonicalEvent,
    Identifiers,
    IgnoredTopic,
    MappingError,
)
from service.events.platform import Platform
from service.events.platforms import PLATFORMS, platform_for
from service.events.platforms.shopify import SHOPIFY, SHOPIFY_TOPICS, map_shopify
from service.events.platforms.standard import BIGCOMMERCE_SCOPES, STANDARD, map_standard
from service.events.platforms.stripe import STRIPE_TOPICS, map_stripe
from service.events.platforms.woocommerce import WOOCOMMERCE_TOPICS, map_woocommerce

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"

Payload = dict[str, Any]

SHOPIFY_ORDER = "shopify_orders_create.json"
WOO_UPDATED = "woocommerce_order_updated_with_refunds.json"
STRIPE_SESSION = "stripe_checkout_session_completed.json"


def load(name: str, **changes: Any) -> Payload:
    payload: Payload = json.loads((FIXTURES / name).read_text())
    payload.update(changes)
    return payload


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def one(events: list[CanonicalEvent]) -> CanonicalEvent:
    assert len(events) == 1, events
    return events[0]


def shopify(topic: str, payload: Payload, delivery_id: str = "shp-1") -> list[CanonicalEvent]:
    return map_shopify(topic=topic, payload=payload, delivery_id=delivery_id)


def woo(topic: str, payload: Payload, delivery_id: str = "wc-1") -> list[CanonicalEvent]:
    return map_woocommerce(topic=topic, payload=payload, delivery_id=delivery_id)


def standard(payload: Payload, delivery_id: str = "msg_1") -> list[CanonicalEvent]:
    return map_standard(source="bigcommerce", payload=payload, delivery_id=delivery_id)


# ---------------------------------------------------------------------------- Shopify


@pytest.mark.parametrize(
    ("topic", "fixture"),
    [("carts/create", "shopify_carts_create.json"), ("carts/update", "shopify_carts_update.json")],
)
def test_shopify_cart_is_one_product_added_with_every_line(topic: str, fixture: str) -> None:
    event = one(shopify(topic, load(fixture)))
    assert (event.source, event.type, event.name) == ("shopify", "track", "Product Added")
    assert event.message_id == "shp-1:Product Added"
    assert event.occurred_at == utc(2022, 1, 1)
    assert event.identifiers == Identifiers(anonymous_id="exampleCartId")
    assert event.properties == {
        "cart_id": "exampleCartId",
        "value": "59.97",
        "currency": "USD",
        "products": [
            {
                "product_id": "788032119674292922",
                "variant": "704912205188288575",
                "sku": "example-shirt-s",
                "name": "Example T-Shirt - Small",
                "price": "19.99",
                "quantity": 3,
            }
        ],
    }


def test_shopify_cart_value_is_an_exact_decimal_sum() -> None:
    payload = load("shopify_carts_create.json")
    line = payload["line_items"][0]
    payload["line_items"] = [
        {**line, "line_price": "0.1", "line_price_set": None},
        {**line, "line_price": 0.2, "line_price_set": None},  # 0.1 + 0.2 in floats: 0.3000…4
        {**line, "line_price": None, "price": "1.05", "quantity": 2},  # price x quantity
    ]
    properties = one(shopify("carts/update", payload)).properties
    assert properties["value"] == "2.40"
    assert "currency" not in properties  # no line says which currency line_price is in


@pytest.mark.parametrize(
    ("topic", "fixture"),
    [
        ("checkouts/create", "shopify_checkouts_create.json"),
        ("checkouts/update", "shopify_checkouts_update.json"),
    ],
)
def test_shopify_checkout_started(topic: str, fixture: str) -> None:
    event = one(shopify(topic, load(fixture)))
    assert (event.name, event.message_id) == ("Checkout Started", "shp-1:Checkout Started")
    assert event.occurred_at == utc(2022, 1, 1)  # 2021-12-31T19:00:00-05:00
    assert event.identifiers == Identifiers(
        anonymous_id="eeafa272cebfd4b22385bc4b645e762c",  # the cart's token: joins the cart
        email="john@example.com",
        platform_customer_id="603851970716743426",
    )
    properties = event.properties
    assert {k: v for k, v in properties.items() if k != "products"} == {
        "checkout_id": "123123123",
        "cart_id": "eeafa272cebfd4b22385bc4b645e762c",
        "total": "421.88",
        "subtotal": "398.00",
        "tax": "23.88",
        "discount": "0.00",
        "currency": "USD",
        "url": "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token",
    }
    assert properties["products"][0] == {
        "product_id": "632910392",
        "variant": "808950810",
        "sku": "IPOD2008PINK",
        "name": "IPod Nano - 8GB",
        "price": "199.00",
        "quantity": 1,
    }
    assert len(properties["products"]) == 2


@pytest.mark.parametrize(
    ("topic", "fixture", "name"),
    [
        ("orders/create", "shopify_orders_create.json", "Order Completed"),
        ("orders/paid", "shopify_orders_paid.json", "Order Updated"),
        ("orders/updated", "shopify_orders_paid.json", "Order Updated"),
        ("orders/cancelled", "shopify_orders_create.json", "Order Cancelled"),
    ],
)
def test_shopify_orders(topic: str, fixture: str, name: str) -> None:
    event = one(shopify(topic, load(fixture)))
    assert (event.name, event.message_id) == (name, f"shp-1:{name}")
    assert event.occurred_at == utc(2022, 1, 1)
    assert event.identifiers == Identifiers(
        email="john@example.com", platform_customer_id="115310627314723954"
    )
    properties = event.properties
    assert properties["order_id"] == "820982911946154508"
    assert (properties["total"], properties["subtotal"]) == ("404.95", "404.95")
    assert (properties["tax"], properties["shipping"], properties["discount"]) == (
        "0.00",
        "10.00",
        "20.00",
    )
    assert properties["currency"] == "USD"
    assert (properties["financial_status"], properties["fulfillment_status"]) == ("voided", None)
    assert properties["cancel_reason"] == "customer"
    assert [p["price"] for p in properties["products"]] == [
        "89.99",
        "19.99",
        "24.99",
        "159.99",
        "119.99",
    ]
    assert "product_id" not in properties["products"][1]  # null in the payload


def test_shopify_order_joins_its_cart_and_checkout() -> None:
    event = one(shopify("orders/create", load("shopify_orders_create_alt_rest_fixture.json")))
    assert event.occurred_at == utc(2008, 1, 10, 16)
    assert event.identifiers == Identifiers(
        anonymous_id="68778783ad298f1c80c3bafcddeea02f",
        email="bob.norman@hostmail.com",
        platform_customer_id="207119551",
    )
    properties = event.properties
    assert (properties["order_id"], properties["cart_id"]) == (
        "450789469",
        "68778783ad298f1c80c3bafcddeea02f",
    )
    assert (properties["total"], properties["tax"]) == ("409.94", "11.94")
    assert [p["variant"] for p in properties["products"]] == ["39072856", "49148385", "457924702"]


def test_shopify_order_cancelled_at_its_cancellation_time() -> None:
    payload = load("shopify_orders_paid.json", cancelled_at="2022-02-01T12:00:00+01:00")
    assert one(shopify("orders/cancelled", payload)).occurred_at == utc(2022, 2, 1, 11)


def test_shopify_refund_totals_the_refund_transactions() -> None:
    event = one(shopify("refunds/create", load("shopify_refunds_create.json")))
    assert (event.name, event.message_id) == ("Order Refunded", "shp-1:Order Refunded")
    assert event.occurred_at == utc(2022, 1, 1)
    assert event.identifiers == Identifiers()  # a refund names no customer
    properties = event.properties
    assert properties["order_id"] == "820982911946154508"
    assert properties["total"] == "85.00"  # 75.00 + 10.00
    assert [(p["sku"], p["quantity"]) for p in properties["products"]] == [
        ("SKU2006-001", 1),
        ("LENS-PROTECT-2YR", 1),
    ]


def test_shopify_refund_counts_only_successful_refund_transactions() -> None:
    payload = load("shopify_refunds_create.json")
    payload["transactions"][1]["status"] = "failure"
    assert one(shopify("refunds/create", payload)).properties["total"] == "75.00"


@pytest.mark.parametrize(
    ("topic", "fixture"),
    [
        ("customers/create", "shopify_customers_create.json"),
        ("customers/update", "shopify_customers_update.json"),
    ],
)
def test_shopify_customer_is_an_identify(topic: str, fixture: str) -> None:
    event = one(shopify(topic, load(fixture)))
    assert (event.type, event.name, event.message_id) == ("identify", None, "shp-1:identify")
    assert event.occurred_at == utc(2022, 1, 1)
    assert event.identifiers == Identifiers(
        platform_customer_id="706405506930370084", email="bob@biller.com"
    )
    assert event.traits == {
        "first_name": "Bob",
        "last_name": "Biller",
        "created_at": "2022-01-01T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("changes", "consent"),
    [
        ({"accepts_marketing": True}, True),
        ({"accepts_marketing": False}, False),
        ({"email_marketing_consent": {"state": "subscribed"}, "accepts_marketing": False}, True),
        ({"email_marketing_consent": {"state": "pending"}}, False),
    ],
)
def test_shopify_customer_traits(changes: Payload, consent: bool) -> None:
    payload = load("shopify_customers_update.json", orders_count=3, tags="vip, , wholesale")
    payload.update(changes)
    traits = one(shopify("customers/update", payload)).traits
    assert traits["marketing_consent"] is consent
    assert (traits["orders_count"], traits["tags"]) == (3, ["vip", "wholesale"])


# ------------------------------------------------------------------------ WooCommerce


def test_woocommerce_order_created_is_order_completed() -> None:
    event = one(woo("order.created", load("woocommerce_order_created.json")))
    assert (event.source, event.name, event.message_id) == (
        "woocommerce",
        "Order Completed",
        "wc-1:Order Completed",
    )
    assert event.occurred_at == utc(2017, 3, 22, 19, 28, 2)  # date_created_gmt
    # customer_id 0 is a guest: no platform customer id.
    assert event.identifiers == Identifiers(email="john.doe@example.com", phone="(555) 555-5555")
    assert event.properties == {
        "order_id": "727",
        "total": "29.35",
        "tax": "1.35",
        "shipping": "10.00",
        "discount": "0.00",
        "currency": "USD",
        "status": "processing",
        "products": [
            {"product_id": "93", "name": "Woo Single #1", "price": "3", "quantity": 2},
            {
                "product_id": "22",
                "variant": "23",
                "sku": "Bar3",
                "name": "Ship Your Idea &ndash; Color: Black, Size: M Test",
                "price": "12",
                "quantity": 1,
            },
        ],
    }


def test_woocommerce_order_updated_with_refunds() -> None:
    updated, refunded = woo("order.updated", load("woocommerce_order_updated_with_refunds.json"))
    assert (updated.name, updated.message_id) == ("Order Updated", "wc-1:Order Updated")
    assert (refunded.name, refunded.message_id) == ("Order Refunded", "wc-1:Order Refunded")
    for event in (updated, refunded):
        assert event.occurred_at == utc(2017, 3, 21, 19, 54, 51)  # date_modified_gmt
        assert event.identifiers == Identifiers(
            platform_customer_id="26", email="joao.silva@example.com", phone="(11) 1111-1111"
        )
    assert (updated.properties["status"], updated.properties["total"]) == ("completed", "39.00")
    assert refunded.properties == {
        "order_id": "723",
        "total": "19.00",  # -10.00 and -9.00, as a positive amount
        "currency": "USD",
        "refund_ids": ["726", "724"],
        "cumulative": True,
    }


@pytest.mark.parametrize(
    ("changes", "names", "refunded_total"),
    [
        ({}, ["Order Updated"], None),
        ({"status": "cancelled"}, ["Order Cancelled"], None),
        ({"status": "refunded"}, ["Order Updated", "Order Refunded"], "29.35"),
    ],
)
def test_woocommerce_order_updated_by_status(
    changes: Payload, names: list[str], refunded_total: str | None
) -> None:
    events = woo("order.updated", load("woocommerce_order_created.json", **changes))
    assert [e.name for e in events] == names
    if refunded_total is not None:  # fully refunded without a refunds list: the whole order
        assert events[-1].properties["total"] == refunded_total


@pytest.mark.parametrize(
    ("topic", "occurred_at"),
    [
        ("customer.created", utc(2017, 3, 21, 19, 9, 28)),
        ("customer.updated", utc(2017, 3, 21, 19, 9, 30)),
    ],
)
def test_woocommerce_customer_is_an_identify(topic: str, occurred_at: datetime) -> None:
    event = one(woo(topic, load("woocommerce_customer_created.json")))
    assert (event.type, event.name, event.message_id) == ("identify", None, "wc-1:identify")
    assert event.occurred_at == occurred_at
    assert event.identifiers == Identifiers(
        platform_customer_id="25", email="john.doe@example.com", phone="(555) 555-5555"
    )
    assert event.traits == {
        "first_name": "John",
        "last_name": "Doe",
        "username": "john.doe",
        "created_at": "2017-03-21T19:09:28+00:00",
    }


# ----------------------------------------------------------------------------- Stripe


def test_stripe_checkout_session_completed() -> None:
    event = one(map_stripe(payload=load("stripe_checkout_session_completed.json")))
    assert (event.source, event.name) == ("stripe", "Order Completed")
    assert event.message_id == "evt_00000000000000:Order Completed"
    assert event.occurred_at == datetime.fromtimestamp(1326853478, tz=UTC)
    assert event.identifiers == Identifiers(
        email="example@example.com", platform_customer_id="cus_00000000000000"
    )
    assert event.properties == {
        "order_id": "cs_00000000000000",
        "payment_intent": "pi_00000000000000",
        "total": "250.00",
        "subtotal": "250.00",
        "tax": "0.00",
        "shipping": "0.00",
        "discount": "0.00",
        "currency": "USD",
    }


@pytest.mark.parametrize(
    ("currency", "total"),
    [("usd", "250.00"), ("jpy", "25000"), ("KRW", "25000"), ("kwd", "25.000"), ("eur", "250.00")],
)
def test_stripe_amounts_use_the_currency_exponent(currency: str, total: str) -> None:
    payload = load("stripe_checkout_session_completed.json")
    payload["data"]["object"]["currency"] = currency
    properties = one(map_stripe(payload=payload)).properties
    assert (properties["total"], properties["currency"]) == (total, currency.upper())


def test_stripe_session_email_falls_back_to_customer_email() -> None:
    payload = load("stripe_checkout_session_completed.json")
    session = payload["data"]["object"]
    session.update(customer=None, customer_details=None, customer_email="guest@example.com")
    assert one(map_stripe(payload=payload)).identifiers == Identifiers(email="guest@example.com")


def test_stripe_charge_refunded() -> None:
    event = one(map_stripe(payload=load("stripe_charge_refunded.json")))
    assert (event.name, event.message_id) == (
        "Order Refunded",
        "evt_00000000000000:Order Refunded",
    )
    assert event.identifiers == Identifiers(platform_customer_id="cus_00000000000000")
    assert event.properties == {
        "order_id": "ch_00000000000000",  # no payment intent on this legacy charge
        "charge_id": "ch_00000000000000",
        "total": "10.00",
        "currency": "USD",
        "cumulative": True,
    }
    payload = load("stripe_charge_refunded.json")
    payload["data"]["object"]["payment_intent"] = "pi_123"
    assert one(map_stripe(payload=payload)).properties["order_id"] == "pi_123"


@pytest.mark.parametrize("topic", ["customer.created", "customer.updated"])
def test_stripe_customer_is_an_identify(topic: str) -> None:
    payload = load("stripe_customer_created.json", type=topic)
    payload["data"]["object"]["name"] = "James Bond"
    event = one(map_stripe(payload=payload))
    assert (event.type, event.name, event.message_id) == (
        "identify",
        None,
        "evt_00000000000000:identify",
    )
    assert event.occurred_at == datetime.fromtimestamp(1326853478, tz=UTC)
    assert event.identifiers == Identifiers(
        platform_customer_id="cus_00000000000000", email="bond@mailinator.com"
    )
    assert event.traits == {"name": "James Bond", "created_at": "2013-07-30T01:38:54+00:00"}


# ------------------------------------------------------- Standard Webhooks: BigCommerce

CART = "09346904-4175-44fd-be53-f7e598531b6c"


@pytest.mark.parametrize(
    ("fixture", "scope", "name", "properties", "identifiers", "created"),
    [
        (
            "bigcommerce_cart_created.json",
            None,
            "Product Added",
            {"cart_id": CART},
            Identifiers(anonymous_id=f"bigcommerce-cart:{CART}"),
            1561482670,
        ),
        (
            "bigcommerce_cart_updated.json",
            None,
            "Product Added",
            {"cart_id": CART},
            Identifiers(anonymous_id=f"bigcommerce-cart:{CART}"),
            1561482670,
        ),
        *[
            (
                "bigcommerce_cart_lineItem_created.json",
                f"store/cart/lineItem/{change}",
                name,
                {"cart_id": "b0386708-fef3-45de-9d8b-fbe3031450a4"},
                Identifiers(anonymous_id="bigcommerce-cart:b0386708-fef3-45de-9d8b-fbe3031450a4"),
                1561481786,
            )
            for change, name in [
                ("created", "Product Added"),
                ("updated", "Product Added"),
                ("deleted", "Product Removed"),
            ]
        ],
        (
            "bigcommerce_cart_converted.json",
            None,
            "Order Completed",
            {"cart_id": "d30016e2-23c0-4a90-884f-2e92ac135476", "order_id": "252"},
            Identifiers(anonymous_id="bigcommerce-cart:d30016e2-23c0-4a90-884f-2e92ac135476"),
            1561486893,
        ),
        (
            "bigcommerce_order_created.json",
            None,
            "Order Completed",
            {"order_id": "250"},
            Identifiers(),
            1561479335,
        ),
        (
            "bigcommerce_order_created.json",
            "store/order/updated",
            "Order Updated",
            {"order_id": "250"},
            Identifiers(),
            1561479335,
        ),
        (
            "bigcommerce_order_statusUpdated.json",
            None,
            "Order Updated",
            {"order_id": "250", "status_id": 11, "previous_status_id": 0},
            Identifiers(),
            1561479335,
        ),
        (
            "bigcommerce_order_refund_created.json",
            None,
            "Order Refunded",
            {"order_id": "250", "refund_id": "3"},
            Identifiers(),
            1561479923,
        ),
        (
            "bigcommerce_customer_created.json",
            None,
            None,
            {},
            Identifiers(platform_customer_id="32"),
            1561481571,
        ),
        (
            # The upstream sample says store/customer/created: a documentation slip.
            "bigcommerce_customer_updated.json",
            "store/customer/updated",
            None,
            {},
            Identifiers(platform_customer_id="32"),
            1561481571,
        ),
    ],
)
def test_bigcommerce_scopes(
    fixture: str,
    scope: str | None,
    name: str | None,
    properties: Payload,
    identifiers: Identifiers,
    created: int,
) -> None:
    payload = load(fixture, **({"scope": scope} if scope else {}))
    event = one(standard(payload))
    assert event.source == "bigcommerce"
    assert (event.type, event.name) == ("track" if name else "identify", name)
    assert event.message_id == f"msg_1:{name or 'identify'}"
    assert event.occurred_at == datetime.fromtimestamp(created, tz=UTC)
    assert event.properties == properties
    assert event.identifiers == identifiers


# --------------------------------------------- Standard Webhooks: Segment-shaped bodies


def test_standard_webhook_segment_track() -> None:
    payload = load("segment_webhook_destination_track_example.json")
    event = one(map_standard(source="segment", payload=payload, delivery_id="msg_2"))
    assert (event.source, event.type, event.name) == ("segment", "track", "Purchased an Item")
    assert event.message_id == "msg_2:Purchased an Item"
    assert event.occurred_at == datetime(2012, 12, 2, 0, 30, 8, 276000, tzinfo=UTC)
    assert event.identifiers == Identifiers(user_id="019mr8mf4r")
    assert event.properties == {"revenue": "39.95", "shippingMethod": "2-day"}


def test_standard_webhook_segment_money_becomes_decimal_strings() -> None:
    payload = load(
        "segment_order_completed.json", anonymousId="a-1", timestamp="2024-05-01T10:00:00Z"
    )
    properties = one(standard(payload)).properties
    assert (properties["total"], properties["revenue"], properties["shipping"]) == (
        "27.5",
        "22.5",
        "3",
    )
    assert [p["price"] for p in properties["products"]] == ["19", "3"]
    assert properties["coupon"] == "hasbros"  # everything else is kept as sent


def test_standard_webhook_segment_identify_and_page() -> None:
    identify = {
        "type": "identify",
        "userId": 42,
        "traits": {"email": "a@example.com", "phone": "+33 6 12 34 56 78", "plan": "gold"},
        "context": {"ip": "203.0.113.9", "locale": "fr-FR", "traits": {"email": "b@example.com"}},
        "timestamp": "2024-05-01T12:00:00+02:00",
    }
    event = one(standard(identify))
    assert (event.type, event.name, event.message_id) == ("identify", None, "msg_1:identify")
    assert event.occurred_at == utc(2024, 5, 1, 10)
    assert event.identifiers == Identifiers(
        user_id="42", email="a@example.com", phone="+33 6 12 34 56 78"
    )
    assert (event.traits, event.context) == ({"plan": "gold"}, {"locale": "fr-FR"})

    from_context = {**identify, "traits": {}, "context": {"traits": {"email": "c@example.com"}}}
    assert one(standard(from_context)).identifiers.email == "c@example.com"

    page = {"type": "page", "name": "Home", "anonymousId": "a-1", "timestamp": "2024-05-01T10:00Z"}
    event = one(standard(page))
    assert (event.type, event.name, event.message_id) == ("page", "Home", "msg_1:Home")


# ------------------------------------------------------ redelivery and ignored topics

DELIVERIES: list[tuple[str, Callable[[str], list[CanonicalEvent]]]] = [
    *[
        (topic, lambda d, t=topic, f=fixture: shopify(t, load(f), d))
        for topic, fixture in [
            ("carts/update", "shopify_carts_update.json"),
            ("checkouts/create", "shopify_checkouts_create.json"),
            ("orders/create", "shopify_orders_create.json"),
            ("refunds/create", "shopify_refunds_create.json"),
            ("customers/update", "shopify_customers_update.json"),
        ]
    ],
    *[
        (topic, lambda d, t=topic, f=fixture: woo(t, load(f), d))
        for topic, fixture in [
            ("order.updated", "woocommerce_order_updated_with_refunds.json"),
            ("customer.created", "woocommerce_customer_created.json"),
        ]
    ],
    ("store/cart/converted", lambda d: standard(load("bigcommerce_cart_converted.json"), d)),
]


@pytest.mark.parametrize(("topic", "deliver"), DELIVERIES, ids=[t for t, _ in DELIVERIES])
def test_a_redelivery_maps_to_the_same_message_ids(
    topic: str, deliver: Callable[[str], list[CanonicalEvent]]
) -> None:
    first, again, other = deliver("d-1"), deliver("d-1"), deliver("d-2")
    assert first == again
    assert [e.message_id for e in first] == [f"d-1:{e.name or e.type}" for e in first]
    assert {e.message_id for e in first}.isdisjoint(e.message_id for e in other)
    for event in first:
        assert event.type != "track" or event.name in ECOMMERCE_EVENTS
        assert event.occurred_at.utcoffset() is not None
        assert not {"email", "phone"} & event.traits.keys()


def test_a_stripe_redelivery_maps_to_the_same_message_ids() -> None:
    payload = load("stripe_checkout_session_completed.json")
    assert map_stripe(payload=payload) == map_stripe(payload=copy.deepcopy(payload))


@pytest.mark.parametrize(
    "deliver",
    [
        lambda: shopify("checkouts/delete", load("shopify_checkouts_delete.json")),
        lambda: shopify("products/create", {"id": 1}),
        lambda: woo("order.deleted", load("woocommerce_order_created.json")),
        lambda: woo("order.restored", load("woocommerce_order_created.json")),
        lambda: woo("action.woocommerce_add_to_cart", {"action": "x", "arg": 1}),
        lambda: map_stripe(payload=load(STRIPE_SESSION, type="checkout.session.expired")),
        lambda: map_stripe(payload=load("stripe_event_envelope_official_fixture.json")),
        lambda: standard(load("bigcommerce_cart_abandoned.json")),
        lambda: standard(load("bigcommerce_order_created.json", scope="store/product/updated")),
        lambda: standard(load("standard_webhooks_contact_created.json")),
        lambda: standard({"hello": "world"}),
    ],
)
def test_unused_topics_are_ignored(deliver: Callable[[], list[CanonicalEvent]]) -> None:
    with pytest.raises(IgnoredTopic):
        deliver()


def test_ignored_topic_names_the_topic() -> None:
    with pytest.raises(IgnoredTopic, match=r"contact\.created"):
        standard(load("standard_webhooks_contact_created.json"))
    with pytest.raises(IgnoredTopic, match="store/cart/abandoned"):
        standard(load("bigcommerce_cart_abandoned.json"))


# --------------------------------------------------------------------- broken payloads


def broken(fixture: str, path: str, value: Any) -> Payload:
    """The fixture with the value at dotted `path` replaced, or removed for `...`."""
    payload = load(fixture)
    *parents, last = path.split(".")
    node: Any = payload
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return payload


@pytest.mark.parametrize(
    ("deliver", "field"),
    [
        # money that is not a decimal number
        *[
            (lambda p, v=value: shopify("orders/create", broken(SHOPIFY_ORDER, p, v)), p)
            for p, value in [
                ("total_price", "abc"),
                ("total_price", "NaN"),
                ("total_price", "Infinity"),
                ("total_price", "1_000.00"),
                ("total_price", " 12.00"),
                ("total_price", True),
                ("total_price", {"amount": "1.00"}),
                ("total_price", "1e999999999"),
                ("total_tax", ""),
                ("line_items.0.price", "12,50"),
                ("total_shipping_price_set.shop_money.amount", "ten"),
            ]
        ],
        (lambda p: shopify("orders/create", broken(SHOPIFY_ORDER, p, ...)), "total_price"),
        (
            lambda p: shopify("carts/create", broken("shopify_carts_create.json", p, "x")),
            "line_items.0.line_price",
        ),
        (
            lambda p: shopify("refunds/create", broken("shopify_refunds_create.json", p, "-")),
            "transactions.1.amount",
        ),
        (lambda p: woo("order.updated", broken(WOO_UPDATED, p, "-ten")), "refunds.1.total"),
        (lambda p: woo("order.created", broken(WOO_UPDATED, p, "NaN")), "line_items.0.price"),
        (
            lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, 250.5)),
            "data.object.amount_total",
        ),
        (lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, None)), "data.object.amount_total"),
        (lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, None)), "data.object.currency"),
        # missing ids
        (lambda p: shopify("orders/paid", broken(SHOPIFY_ORDER, p, ...)), "id"),
        (lambda p: shopify("carts/update", broken("shopify_carts_update.json", p, None)), "token"),
        (
            lambda p: shopify("checkouts/update", broken("shopify_checkouts_update.json", p, "")),
            "token",
        ),
        (
            lambda p: shopify("customers/create", broken("shopify_customers_create.json", p, ...)),
            "id",
        ),
        (
            lambda p: shopify("refunds/create", broken("shopify_refunds_create.json", p, ...)),
            "order_id",
        ),
        (lambda p: woo("order.created", broken(WOO_UPDATED, p, ...)), "id"),
        (
            lambda p: woo("customer.updated", broken("woocommerce_customer_created.json", p, [1])),
            "id",
        ),
        (lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, ...)), "id"),
        (lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, ...)), "type"),
        (lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, ...)), "data.object.id"),
        (lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, ...)), "data.object"),
        (lambda p: standard(broken("bigcommerce_order_created.json", p, ...)), "data.id"),
        (lambda p: standard(broken("bigcommerce_cart_converted.json", p, ...)), "data.orderId"),
        (lambda p: standard(broken("bigcommerce_order_created.json", p, True)), "data.id"),
        # timestamps
        (lambda p: shopify("orders/create", broken(SHOPIFY_ORDER, p, "yesterday")), "created_at"),
        (
            lambda p: shopify("orders/create", broken(SHOPIFY_ORDER, p, "2022-01-01T00:00:00")),
            "created_at",
        ),
        (lambda p: shopify("orders/updated", broken(SHOPIFY_ORDER, p, ...)), "updated_at"),
        (lambda p: woo("order.updated", broken(WOO_UPDATED, p, "21/03/2017")), "date_modified_gmt"),
        (lambda p: map_stripe(payload=broken(STRIPE_SESSION, p, "1326853478")), "created"),
        (lambda p: standard(broken("bigcommerce_order_created.json", p, 10**20)), "created_at"),
        # structure
        (lambda p: shopify("orders/create", broken(SHOPIFY_ORDER, p, "many")), "line_items"),
        (lambda p: shopify("orders/create", broken(SHOPIFY_ORDER, p, ["x"])), "line_items.0"),
        (
            lambda p: shopify("orders/create", broken(SHOPIFY_ORDER, p, "3")),
            "line_items.0.quantity",
        ),
        (lambda p: shopify("orders/create", broken(SHOPIFY_ORDER, p, 7)), "customer"),
    ],
)
def test_broken_payloads_name_the_field(
    deliver: Callable[[str], list[CanonicalEvent]], field: str
) -> None:
    with pytest.raises(MappingError) as raised:
        deliver(field)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "track", "userId": "u", "timestamp": "2024-05-01T10:00:00Z"}, "event"),
        ({"type": "track", "event": "Product Viewed", "timestamp": "2024-05-01T10:00Z"}, "userId"),
        ({"type": "identify", "userId": "u"}, "timestamp"),
        ({"type": "page", "userId": "u", "timestamp": "2024-05-01T10:00:00"}, "timestamp"),
        (
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u",
                "timestamp": "2024-05-01T10:00:00Z",
                "properties": {"products": [{"price": "free"}]},
            },
            "properties.products.0.price",
        ),
    ],
)
def test_broken_segment_bodies_name_the_field(payload: Payload, field: str) -> None:
    with pytest.raises(MappingError) as raised:
        standard(payload)
    assert raised.value.field == field


@pytest.mark.parametrize(
    "deliver",
    [
        lambda: shopify("orders/create", ["not", "an", "object"]),  # type: ignore[arg-type]
        lambda: map_stripe(payload="evt"),  # type: ignore[arg-type]
        lambda: standard(None),  # type: ignore[arg-type]
    ],
)
def test_a_body_that_is_not_an_object_is_a_mapping_error(
    deliver: Callable[[], list[CanonicalEvent]],
) -> None:
    with pytest.raises(MappingError):
        deliver()


# ------------------------------------------------------------------------------- docs


TABLES = {
    "shopify": SHOPIFY_TOPICS,
    "woocommerce": WOOCOMMERCE_TOPICS,
    "stripe": STRIPE_TOPICS,
    "bigcommerce": BIGCOMMERCE_SCOPES,
}


@pytest.mark.parametrize(
    "topic", [pytest.param(t, id=f"{p}:{t}") for p, table in TABLES.items() for t in table]
)
def test_every_mapped_topic_is_documented(topic: str) -> None:
    assert f"`{topic}`" in DOCS.read_text()


@pytest.mark.parametrize(
    ("status_id", "name"), [(5, "Order Cancelled"), (6, "Order Cancelled"), (11, "Order Updated")]
)
def test_bigcommerce_status_update_to_cancelled_or_declined_cancels(
    status_id: int, name: str
) -> None:
    payload = load("bigcommerce_order_statusUpdated.json")
    payload["data"]["status"]["new_status_id"] = status_id
    [event] = map_standard(source="bigcommerce", payload=payload, delivery_id="d1")
    assert event.name == name
    assert event.properties["order_id"] == "250"


def test_the_registry_serves_each_platform_by_name_and_any_other_source_as_standard() -> None:
    assert {name: p.name for name, p in PLATFORMS.items()} == {
        "shopify": "shopify",
        "woocommerce": "woocommerce",
        "stripe": "stripe",
    }
    assert platform_for("shopify") is SHOPIFY
    assert platform_for("bigcommerce") is STANDARD


@pytest.mark.parametrize("platform", [*PLATFORMS.values(), STANDARD], ids=lambda p: p.name)
def test_a_platform_never_keeps_a_signature_header(platform: Platform) -> None:
    signed = {"x-shopify-hmac-sha256", "x-wc-webhook-signature", "stripe-signature"}
    assert not signed & set(platform.kept_headers)
    assert "webhook-signature" not in platform.kept_headers
    assert all(name == name.lower() for name in platform.kept_headers)
