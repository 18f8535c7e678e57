"""The profile facts marketers reach for, computed from events sent through the intake:
orders and spend in the last 30, 90 and 365 days (sliding with time, no event needed),
historic CLV, orders with a discount, and the categories viewed and bought; read the same
way by rules and segments (`profiles.facts.read`) and by decisions (their snapshot)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from alembic import command
from fastapi.testclient import TestClient
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.orm import Session

from service import db
from service.auth.service import Scope
from service.decisions import repository as decisions_repository
from service.events.identity import lookup_key
from service.profiles import facts as profile_facts
from service.settings import get_settings
from tests import support
from tests.support import resolve_all
from tests.support import webhooks as hooks
from tests.support.events import track
from tests.support.rules import NOW, at, send


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST)}


def customer_of(session: Session, kind: str, value: str) -> uuid.UUID:
    """The profile holding this identity (an email is looked up by its keyed hash)."""
    key = lookup_key(kind, value)
    assert key is not None
    customer = session.scalar(
        text(
            "SELECT coalesce(c.merged_into_id, c.id) FROM identities AS i "
            "JOIN customers AS c ON c.id = i.customer_id WHERE i.kind = :k AND i.value = :v"
        ),
        {"k": key.kind, "v": key.value},
    )
    assert customer is not None
    return customer


def facts_of(session: Session, user: str, *, now: datetime = NOW) -> dict[str, Any]:
    """The user's profile facts as an evaluation at `now` sees them."""
    resolve_all()
    customer = customer_of(session, "user_id", user)
    found = profile_facts.read(session, [customer], currency=get_settings().shop_currency, now=now)
    return found[customer].facts(now=now, consent_defaults={})


def ago(days: float) -> str:
    return at(-timedelta(days=days))


def order(user: str, order_id: str, total: str, *, days: float, **props: Any) -> dict:
    props.setdefault("currency", "USD")
    return track(
        "Order Completed", user=user, order_id=order_id, total=total, timestamp=ago(days), **props
    )


def change(name: str, user: str, order_id: str, *, days: float, **props: Any) -> dict:
    return track(name, user=user, order_id=order_id, timestamp=ago(days), **props)


BEFORE = "d8a80a71281a"  # the migration before these facts

WINDOWED = ["orders_30d", "spent_30d", "orders_90d", "spent_90d", "orders_365d", "spent_365d"]


def windows(facts: dict[str, Any]) -> list[float]:
    return [facts[name] for name in WINDOWED]


def test_orders_and_spend_in_windows_less_refunds_without_cancelled_or_other_currencies(
    client: TestClient, session: Session, keys
) -> None:
    send(
        client,
        keys,
        order("w", "o1", "120.00", days=10),
        order("w", "o2", "200.00", days=60),
        order("w", "o3", "300.00", days=200),
        order("w", "o4", "400.00", days=400),
        order("w", "o5", "1000.00", days=20),
        order("w", "o6", "90.00", days=5, currency="EUR"),
        change("Order Refunded", "w", "o2", days=1, total="50.00", currency="USD"),
        change("Order Cancelled", "w", "o5", days=19),
    )
    facts = facts_of(session, "w")
    # 30 days: o1 and o6 (EUR: counted as an order, not as spend in the shop's currency).
    # 90 days: and o2, less its refund. 365 days: and o3. o4 is older; o5 was cancelled.
    assert windows(facts) == [2, 120.0, 3, 270.0, 4, 570.0]
    assert facts["orders_count"] == 5
    assert facts["clv"] == facts["total_spent"] == 970.0  # 120 + 150 + 300 + 400


def test_windows_slide_with_time_without_an_event(
    client: TestClient, session: Session, keys
) -> None:
    send(client, keys, order("s", "o1", "120.00", days=10), order("s", "o2", "200.00", days=60))
    assert windows(facts_of(session, "s")) == [1, 120.0, 2, 320.0, 2, 320.0]
    # 21 days on, o1 is 31 days old; 40 days on, o2 is 100.
    later = facts_of(session, "s", now=NOW + timedelta(days=21))
    assert windows(later) == [0, 0.0, 2, 320.0, 2, 320.0]
    assert windows(facts_of(session, "s", now=NOW + timedelta(days=40))) == [
        0,
        0.0,
        1,
        120.0,
        2,
        320.0,
    ]
    # A window's start is inclusive: an order exactly 30 days old is in the last 30 days.
    send(client, keys, order("edge", "e1", "10.00", days=30))
    assert facts_of(session, "edge")["orders_30d"] == 1
    assert facts_of(session, "edge", now=NOW + timedelta(seconds=1))["orders_30d"] == 0


def test_a_customer_with_no_orders_has_zeros_and_no_share(
    client: TestClient, session: Session, keys
) -> None:
    send(client, keys, track("Page Viewed", user="window-shopper", timestamp=ago(1)))
    facts = facts_of(session, "window-shopper")
    assert windows(facts) == [0, 0.0, 0, 0.0, 0, 0.0]
    assert (facts["clv"], facts["discount_orders"], facts["discount_share"]) == (0.0, 0, None)
    assert facts["categories_viewed"] == facts["categories_bought"] == []


def test_orders_with_a_discount_amount_or_a_coupon(
    client: TestClient, session: Session, keys
) -> None:
    send(
        client,
        keys,
        order("d", "d1", "45.00", days=3, discount="5.00", coupon="WELCOME"),
        order("d", "d2", "50.00", days=3, discount="0"),
        order("d", "d3", "37.50", days=3, discount=12.5),
        order("d", "d4", "20.00", days=3),
        order("d", "d5", "30.00", days=2, coupon="SPRING"),
        order("d", "d6", "25.00", days=2, coupon="  "),
    )
    facts = facts_of(session, "d")
    assert (facts["discount_orders"], facts["orders_count"]) == (3, 6)
    assert facts["discount_share"] == 0.5
    # An update that says nothing of discounts keeps what was known; one that does says
    # it anew; a cancelled order is no longer counted.
    send(
        client,
        keys,
        change("Order Updated", "d", "d3", days=1, status="completed"),
        change("Order Updated", "d", "d2", days=1, coupon="LATE"),
        change("Order Cancelled", "d", "d5", days=1),
    )
    facts = facts_of(session, "d")
    assert (facts["discount_orders"], facts["orders_count"]) == (3, 5)
    assert facts["discount_share"] == 3 / 5


def test_platform_orders_say_their_discount(client: TestClient, session: Session, keys) -> None:
    shopify = hooks.fixture("shopify_orders_create.json")  # total_discounts 20.00
    assert hooks.shopify(client, "orders/create", shopify).status_code == 200
    woo = hooks.fixture("woocommerce_order_created.json")  # discount_total 0.00
    assert hooks.woocommerce(client, "order.created", woo).status_code == 200
    resolve_all()
    now = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
    found = profile_facts.read(
        session,
        [
            customer_of(session, "email", shopify["customer"]["email"]),
            customer_of(session, "email", woo["billing"]["email"]),
        ],
        currency="USD",
        now=now,
    )
    shares = sorted(p.facts(now=now, consent_defaults={})["discount_share"] for p in found.values())
    assert shares == [0.0, 1.0]


def test_categories_viewed_and_bought(client: TestClient, session: Session, keys) -> None:
    send(
        client,
        keys,
        track("Product Viewed", user="c", product_id="p1", category="Games", timestamp=ago(3)),
        track("Product Viewed", user="c", product_id="p2", category="Games", timestamp=ago(2)),
        track("Product Viewed", user="c", product_id="p3", category=" Toys ", timestamp=ago(2)),
        track("Product Viewed", user="c", product_id="p4", category="Books", timestamp=ago(1)),
        track("Product Viewed", user="c", product_id="p5", timestamp=ago(1)),
        track("Product Added", user="c", product_id="p6", category="Garden", timestamp=ago(1)),
        order(
            "c",
            "o1",
            "40.00",
            days=1,
            products=[{"product_id": "p1", "category": "Games"}, {"product_id": "p7"}],
        ),
        order(
            "c",
            "o2",
            "20.00",
            days=1,
            products=[{"product_id": "p8", "category": "Puzzles"}, "not a product"],
        ),
        order("c", "o3", "60.00", days=1, products=[{"product_id": "p9", "category": "Kitchen"}]),
    )
    facts = facts_of(session, "c")
    assert facts["categories_viewed"] == ["Books", "Games", "Toys"]
    assert facts["categories_bought"] == ["Games", "Kitchen", "Puzzles"]
    send(client, keys, change("Order Cancelled", "c", "o3", days=0.5))
    assert facts_of(session, "c")["categories_bought"] == ["Games", "Puzzles"]


def test_a_merge_keeps_both_profiles_categories_and_discounts(
    client: TestClient, session: Session, keys
) -> None:
    send(
        client,
        keys,
        track("Product Viewed", anon="dev-1", product_id="p1", category="Shoes", timestamp=ago(2)),
        track(
            "Order Completed",
            anon="dev-1",
            order_id="a1",
            total="30",
            currency="USD",
            coupon="HELLO",
            products=[{"category": "Shoes"}],
            timestamp=ago(2),
        ),
        track("Product Viewed", user="m", product_id="p2", category="Hats", timestamp=ago(2)),
    )
    send(client, keys, {**track("Page Viewed", user="m", timestamp=ago(1)), "anonymousId": "dev-1"})
    facts = facts_of(session, "m")
    assert customer_of(session, "user_id", "m") == customer_of(session, "anonymous_id", "dev-1")
    assert facts["categories_viewed"] == ["Hats", "Shoes"]
    assert facts["categories_bought"] == ["Shoes"]
    assert (facts["discount_orders"], facts["discount_share"]) == (1, 1.0)


def test_decisions_read_the_same_facts(client: TestClient, session: Session, keys) -> None:
    send(
        client,
        keys,
        order("dec", "o1", "700.00", days=10, coupon="VIP", products=[{"category": "Games"}]),
        order("dec", "o2", "100.00", days=100),
        track("Product Viewed", user="dec", product_id="p1", category="Books", timestamp=ago(1)),
    )
    resolve_all()
    customer = customer_of(session, "user_id", "dec")
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor(row_factory=namedtuple_row) as cursor:
        cursor.execute(
            decisions_repository._SNAPSHOT,
            {"customer_id": customer, "kind": None, "value": None, "currency": "USD"},
        )
        row = cursor.fetchone()
    snapshot = profile_facts.profile_from_row(row)
    now = datetime.now(UTC)
    (read,) = profile_facts.read(session, [customer], currency="USD", now=now).values()
    assert snapshot == read
    assert windows(snapshot.facts(now=now, consent_defaults={})) == [
        1,
        700.0,
        1,
        700.0,
        2,
        800.0,
    ]
    assert (snapshot.categories_bought, snapshot.categories_viewed) == (("Games",), ("Books",))


def test_the_upgrade_fills_them_from_stored_events(make_database) -> None:
    """Orders and profiles stored before these facts existed get them from their events,
    as the intake would have recorded them."""
    url = make_database("facts_upgrade", migrate=False)
    config = db.alembic_config(url)
    command.upgrade(config, BEFORE)
    customer = uuid.uuid4()
    events = [
        # (name, order id, occurred days ago, properties)
        ("Order Completed", "o1", 5, {"discount": "5.00", "products": [{"category": "Games"}]}),
        ("Order Updated", "o1", 4, {"status": "completed"}),  # says nothing of either
        ("Order Completed", "o2", 5, {"discount": "0", "products": [{"category": " Toys "}]}),
        ("Order Updated", "o2", 4, {"coupon": "LATE", "products": [{"category": "Books"}]}),
        ("Order Completed", "o3", 5, {"coupon": "X", "products": [{"category": "Kitchen"}]}),
        ("Order Cancelled", "o3", 4, {}),
        ("Order Completed", "o4", 5, {}),
        ("Product Viewed", None, 3, {"category": "Shoes"}),
        ("Product Viewed", None, 2, {"category": "Games"}),
        ("Product Viewed", None, 2, {"category": ""}),
    ]
    with psycopg.connect(support.libpq_url(url), autocommit=True) as conn:
        conn.execute("INSERT INTO customers (id, orders_count) VALUES (%s, 3)", (customer,))
        for i, (name, order_id, days, props) in enumerate(events):
            conn.execute(
                "INSERT INTO events (source, message_id, customer_id, type, name, occurred_at,"
                " properties, context) VALUES ('api', %s, %s, 'track', %s,"
                " now() - make_interval(days => %s), %s, '{}')",
                (f"m{i}", customer, name, days, Jsonb({**props, "order_id": order_id})),
            )
        for order_id, status in (
            ("o1", "completed"),
            ("o2", "completed"),
            ("o3", "cancelled"),
            ("o4", "completed"),
        ):
            conn.execute(
                "INSERT INTO orders (source, order_id, customer_id, status, currency, total,"
                " placed_at, status_at) VALUES ('api', %s, %s, %s, 'USD', 10, now(), now())",
                (order_id, customer, status),
            )
    command.upgrade(config, "head")
    with psycopg.connect(support.libpq_url(url)) as conn:
        orders = {
            order_id: (discounted, categories)
            for order_id, discounted, categories in conn.execute(
                "SELECT order_id, discounted, categories FROM orders"
            )
        }
        row = conn.execute(
            "SELECT discount_orders, categories_bought, categories_viewed FROM customers"
        ).fetchone()
    assert orders == {
        "o1": (True, ["Games"]),
        "o2": (True, ["Books"]),
        "o3": (True, ["Kitchen"]),
        "o4": (None, None),
    }
    assert row == (2, ["Books", "Games"], ["Games", "Shoes"])
