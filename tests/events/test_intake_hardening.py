"""Bad input at intake: times outside the accepted window, bodies nested too deep,
strings PostgreSQL cannot store and amounts that are not money. Each is refused on its
own (the rest of its batch is kept) with the field named, or, for a signed webhook,
kept in the quarantine and acknowledged; never a 500."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from service.events.body import MAX_DEPTH
from service.settings import get_settings
from tests.support import resolve_all
from tests.support import webhooks as send
from tests.support.events import track
from tests.support.webhooks import fixture

PROBLEM = "application/problem+json"
FAR_FUTURE = "9999-12-31T00:00:00Z"


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {s.value: api_key(s) for s in (Scope.INGEST, Scope.MARKETER, Scope.ADMIN)}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def count(session: Session, table: str) -> int:
    return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def batch(client: TestClient, keys, *events: Any) -> list[dict]:
    response = client.post("/v1/events", json={"batch": list(events)}, headers=keys["ingest"])
    assert response.status_code == 200, response.text
    return response.json()["results"]


def raw_batch(client: TestClient, keys, body: bytes) -> list[dict]:
    headers = {**keys["ingest"], "content-type": "application/json"}
    response = client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def outcome(result: dict) -> tuple[str, str | None]:
    return result["status"], result["field"]


def basic(keys) -> dict[str, str]:
    key = keys["ingest"]["Authorization"].removeprefix("Bearer ")
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def quarantined(session: Session) -> list[tuple[str, str | None]]:
    rows = session.execute(text("SELECT reason, field FROM quarantine ORDER BY id")).all()
    return [(r.reason, r.field) for r in rows]


# --- timestamps -------------------------------------------------------------------


def test_a_single_event_from_the_far_future_is_a_422_naming_timestamp(
    client: TestClient, session: Session, keys
) -> None:
    event = track("Product Viewed", anon="a1", timestamp=FAR_FUTURE)
    response = client.post("/v1/events", json=event, headers=keys["ingest"])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == "timestamp"
    assert response.json()["results"][0]["status"] == "rejected"
    assert count(session, "events") == 0
    [(reason, field)] = quarantined(session)  # kept, as an event rejected in a batch
    assert field == "timestamp"
    assert "future" in reason


def test_event_times_are_kept_within_the_window(client: TestClient, session: Session, keys) -> None:
    now = datetime.now(UTC)
    skew = timedelta(seconds=get_settings().event_max_future_s)
    times = [
        "2000-01-01T00:00:00Z",  # the first instant accepted
        iso(now + skew - timedelta(seconds=30)),
        "1999-12-31T23:59:59Z",
        iso(now + skew + timedelta(seconds=60)),
        FAR_FUTURE,
        "0001-01-01T00:00:00Z",
    ]
    results = batch(client, keys, *(track("Cart Viewed", anon="a1", timestamp=t) for t in times))
    assert [outcome(r) for r in results] == [("accepted", None)] * 2 + [
        ("rejected", "timestamp")
    ] * 4
    assert "2000-01-01" in results[2]["reason"]
    assert count(session, "events") == 2
    assert len(quarantined(session)) == 4


def test_segment_calls_bound_the_time_after_the_clock_correction(
    client: TestClient, session: Session, keys
) -> None:
    now = datetime.now(UTC)
    right = {**track("Cart Viewed", anon="a1"), "timestamp": FAR_FUTURE, "sentAt": FAR_FUTURE}
    wrong = {**track("Cart Viewed", anon="a2"), "timestamp": FAR_FUTURE, "sentAt": iso(now)}
    response = client.post("/v1/batch", json={"batch": [right, wrong]}, headers=basic(keys))
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    single = client.post(
        "/v1/track", json=track("Cart Viewed", anon="a3", timestamp=FAR_FUTURE), headers=basic(keys)
    )
    assert (single.status_code, single.json()["rejected"]) == (200, 1)
    assert [f for _, f in quarantined(session)] == ["timestamp", "timestamp"]


def _far_future_deliveries() -> list[tuple[str, Any, str]]:
    shopify = fixture("shopify_orders_create.json") | {"created_at": "9999-12-31T00:00:00-05:00"}
    woo = fixture("woocommerce_order_created.json") | {"date_created_gmt": "2999-01-01T00:00:00"}
    stripe = fixture("stripe_checkout_session_completed.json") | {"created": 253402214400}
    bigcommerce = fixture("bigcommerce_order_created.json") | {"created_at": 946684799}
    segment = fixture("segment_order_completed.json") | {
        "userId": "u1",
        "timestamp": "1970-01-01T00:00:00Z",
    }
    return [
        ("shopify", shopify, "created_at"),
        ("woocommerce", woo, "date_created_gmt"),
        ("stripe", stripe, "created"),
        ("bigcommerce", bigcommerce, "created_at"),
        ("segment", segment, "timestamp"),
    ]


def deliver(client: TestClient, source: str, payload: Any) -> Any:
    if source == "shopify":
        return send.shopify(client, "orders/create", payload)
    if source == "woocommerce":
        return send.woocommerce(client, "order.created", payload)
    if source == "stripe":
        return send.stripe(client, payload)
    return send.standard(client, "bigcommerce", payload)


@pytest.mark.parametrize(
    ("source", "payload", "field"),
    _far_future_deliveries(),
    ids=[d[0] for d in _far_future_deliveries()],
)
def test_a_signed_webhook_with_a_time_out_of_range_is_kept_in_the_quarantine(
    client: TestClient, session: Session, source: str, payload: Any, field: str
) -> None:
    response = deliver(client, source, payload)
    assert response.status_code == 200, response.text  # the platform stops retrying
    assert response.json()["status"] == "quarantined"
    assert count(session, "events") == 0
    [(reason, named)] = quarantined(session)
    assert named == field
    assert "2000-01-01" in reason or "future" in reason


def test_an_identify_from_the_far_future_cannot_pin_a_trait(client: TestClient, keys) -> None:
    """A trait keeps the value of its newest identify: one dated 9999 would have won
    over every later one."""
    pinned = {
        "type": "identify",
        "userId": "u1",
        "timestamp": FAR_FUTURE,
        "traits": {"plan": "gold"},
    }
    later = {
        "type": "identify",
        "userId": "u1",
        "timestamp": iso(datetime.now(UTC)),
        "traits": {"plan": "silver"},
    }
    results = batch(client, keys, pinned)
    assert outcome(results[0]) == ("rejected", "timestamp")
    batch(client, keys, later)
    resolve_all()
    profile = client.get("/v1/profiles/user_id:u1", headers=keys["marketer"]).json()
    assert profile["traits"]["plan"] == "silver"


# --- nesting ----------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """An event whose body is `depth` levels deep (the event object is level 1)."""
    inner = "[" * (depth - 2) + "1" + "]" * (depth - 2)
    return (
        '{"type":"track","event":"Cart Viewed","anonymousId":"a1","properties":{"x":' + inner + "}}"
    ).encode()


def test_a_body_nested_deeper_than_the_bound_is_refused_naming_body(
    client: TestClient, session: Session, keys
) -> None:
    headers = {**keys["ingest"], "content-type": "application/json"}
    assert client.post("/v1/events", content=nested(MAX_DEPTH), headers=headers).status_code == 200
    for body in (nested(MAX_DEPTH + 1), nested(5_000), b"[" * 100_000 + b"]" * 100_000):
        response = client.post("/v1/events", content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"][0]["field"] == "body"
    deep_batch = b'{"batch":[' + nested(3_000) + b"]}"
    for path in ("/v1/batch", "/v1/track"):
        body = deep_batch if path == "/v1/batch" else nested(3_000)
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["field"] == "body"
    assert count(session, "events") == 1


@pytest.mark.parametrize("source", ["shopify", "stripe", "standard", "woocommerce"])
def test_a_signed_webhook_nested_too_deep_is_kept_in_the_quarantine(
    client: TestClient, session: Session, keys, source: str
) -> None:
    body = (
        b'{"id":"evt_1","type":"checkout.session.completed","data":'
        + b"[" * 3_000
        + b"]" * 3_000
        + b"}"
    )
    if source == "shopify":
        response = send.shopify(client, "orders/create", body)
    elif source == "stripe":
        response = send.stripe(client, body)
    elif source == "woocommerce":
        response = send.woocommerce(client, "order.created", body)
    else:
        response = send.standard(client, "bigcommerce", body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "quarantined"
    [(reason, field)] = quarantined(session)
    assert field == "body"
    assert "nested deeper" in reason
    item = session.execute(text("SELECT id FROM quarantine")).scalar_one()
    replay = client.post(f"/v1/quarantine/{item}/replay", headers=keys["admin"])
    assert replay.status_code == 422  # still refused, not a 500


# --- strings PostgreSQL cannot store ----------------------------------------------

NUL, SURROGATE = "\\u0000", "\\ud800"


def with_bad(field: str, bad: str) -> bytes:
    """A JSON event with `bad` (a JSON escape) inside `field`."""
    event: dict[str, Any] = {
        "type": "track",
        "event": "Cart Viewed",
        "userId": "u1",
        "anonymousId": "a1",
        "messageId": uuid.uuid4().hex,
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"cart_id": "c1"},
    }
    if field in ("name", "previousId"):
        event |= {
            "type": "page" if field == "name" else "alias",
            "name": "Home",
            "previousId": "p1",
        }
    placeholder = "@@BAD@@"
    if field.startswith("properties.") or field.startswith("traits."):
        part, key = field.split(".", 1)
        event.setdefault(part, {})[key] = f"x{placeholder}y"
    else:
        event[field] = f"x{placeholder}y"
    return json.dumps(event).replace(placeholder, bad).encode()


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize(
    "field",
    [
        "userId",
        "anonymousId",
        "messageId",
        "event",
        "name",
        "previousId",
        "properties.cart_id",
        "traits.email",
    ],
)
def test_an_unstorable_string_rejects_only_its_event_naming_the_field(
    client: TestClient, session: Session, keys, field: str, bad: str
) -> None:
    good = json.dumps(track("Cart Viewed", anon="a9")).encode()
    body = b'{"batch":[' + good + b"," + with_bad(field, bad) + b"]}"
    results = raw_batch(client, keys, body)
    assert [outcome(r) for r in results] == [("accepted", None), ("rejected", field)]
    assert count(session, "events") == 1
    assert len(quarantined(session)) == 1


def test_an_unstorable_string_in_a_signed_webhook_is_kept_in_the_quarantine(
    client: TestClient, session: Session
) -> None:
    order = fixture("shopify_orders_create.json") | {"cart_token": "tok\u0000en"}
    response = send.shopify(client, "orders/create", order)
    assert (response.status_code, response.json()["status"]) == (200, "quarantined")
    segment = fixture("segment_order_completed.json") | {
        "userId": "u\ud800",
        "timestamp": "2026-11-20T10:00:00Z",
    }
    body = json.dumps(segment).encode()  # ASCII, the surrogate escaped
    response = send.standard(client, "bigcommerce", body)
    assert (response.status_code, response.json()["status"]) == (200, "quarantined")
    assert [f for _, f in quarantined(session)] == ["cart_token", "userId"]


# --- amounts and numbers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ('{"order_id":"o1","total":NaN,"currency":"USD"}', "properties.total"),
        ('{"order_id":"o1","total":Infinity}', "properties.total"),
        ('{"order_id":"o1","revenue":-Infinity}', "properties.revenue"),
        ('{"order_id":"o1","total":1e400}', "properties.total"),
        ('{"order_id":"o1","total":"NaN"}', "properties.total"),
        ('{"order_id":"o1","total":"12,50"}', "properties.total"),
        ('{"order_id":"o1","total":true}', "properties.total"),
        ('{"order_id":"o1","total":-1e30}', "properties.total"),
        ('{"order_id":"o1","total":"1000000000000"}', "properties.total"),
        (
            '{"order_id":"o1","products":[{"price":19},{"price":NaN}]}',
            "properties.products.1.price",
        ),
        ('{"order_id":"o1","rating":NaN}', "properties.rating"),
        ('{"order_id":"o1","n":100000000000000000000}', "properties.n"),
    ],
)
def test_a_number_that_is_not_storable_money_rejects_its_event_naming_the_field(
    client: TestClient, session: Session, keys, properties: str, field: str
) -> None:
    good = json.dumps(track("Cart Viewed", anon="a9")).encode()
    bad = (
        '{"type":"track","event":"Order Completed","userId":"u1","properties":' + properties + "}"
    ).encode()
    results = raw_batch(client, keys, b'{"batch":[' + good + b"," + bad + b"]}")
    assert [outcome(r) for r in results] == [("accepted", None), ("rejected", field)]
    assert count(session, "events") == 1


def test_amounts_within_bounds_are_stored_as_sent(
    client: TestClient, session: Session, keys
) -> None:
    totals = [19.99, "19.99", 0, "-5.00", 999_999_999_999.99, "1E+3"]
    events = [
        track("Order Completed", user=f"u{i}", order_id=f"o{i}", total=t, currency="USD")
        for i, t in enumerate(totals)
    ]
    assert [r["status"] for r in batch(client, keys, *events)] == ["accepted"] * len(totals)
    assert resolve_all() == len(totals)
    stored = (
        session.execute(text("SELECT properties -> 'total' FROM events ORDER BY id"))
        .scalars()
        .all()
    )
    assert stored == totals
    assert count(session, "events WHERE resolve_error IS NOT NULL") == 0


def test_a_webhook_amount_beyond_the_money_bound_is_kept_in_the_quarantine(
    client: TestClient, session: Session
) -> None:
    order = fixture("shopify_orders_create.json") | {"total_price": "100000000000000.00"}
    response = send.shopify(client, "orders/create", order)
    assert (response.status_code, response.json()["status"]) == (200, "quarantined")
    assert [f for _, f in quarantined(session)] == ["total_price"]
    strange = fixture("segment_order_completed.json") | {
        "userId": "u1",
        "timestamp": "2026-11-20T10:00:00Z",
    }
    body = json.dumps(strange).replace('"coupon": "hasbros"', '"coupon": NaN').encode()
    response = send.standard(client, "bigcommerce", body)
    assert (response.status_code, response.json()["status"]) == (200, "quarantined")
    assert quarantined(session)[1][1] == "body"


def test_names_that_cannot_be_stored_are_escaped_where_they_are_reported(
    client: TestClient, session: Session, keys
) -> None:
    """A key holding a NUL or a lone surrogate is named in the answer and the quarantine
    (as its escape), and a webhook's topic or id read from the body is stored escaped."""
    body = (
        b'{"batch":[{"type":"track","event":"x","userId":"u1",'
        b'"properties":{"a\\u0000b":1,"c\\udc00":2}}]}'
    )
    [result] = raw_batch(client, keys, body)
    assert outcome(result) == ("rejected", "properties.a\\u0000b")
    assert quarantined(session)[0][1] == "properties.a\\u0000b"
    bigcommerce = fixture("bigcommerce_order_created.json") | {"scope": "\u0000"}
    response = send.standard(client, "bigcommerce", bigcommerce)
    assert (response.status_code, response.json()["status"]) == (200, "ignored")
    stripe = fixture("stripe_checkout_session_completed.json") | {
        "id": "evt_\u0000",
        "type": "checkout.session.completed\ud800",
    }
    response = send.stripe(client, json.dumps(stripe).encode())
    assert (response.status_code, response.json()["status"]) == (200, "quarantined")
    topics = session.execute(
        text("SELECT topic, delivery_id FROM webhook_deliveries ORDER BY id")
    ).all()
    assert [tuple(t) for t in topics] == [
        ("\\u0000", topics[0][1]),
        ("checkout.session.completed\\ud800", "evt_\\u0000"),
    ]
