from __future__ import annotations

import copy
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.events.platforms.shopify import sign_shopify
from service.settings import get_settings
from tests.support import resolve_all
from tests.support import webhooks as send
from tests.support.webhooks import fixture

PROBLEM = "application/problem+json"


def count(session: Session, table: str) -> int:
    return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def event_names(session: Session) -> list[str]:
    return list(session.execute(text("SELECT name FROM events ORDER BY id")).scalars())


# --- each platform's real payloads, signed with its recipe --------------------------


@pytest.mark.parametrize(
    ("topic", "name", "expected"),
    [
        ("orders/create", "shopify_orders_create.json", ["Order Completed"]),
        ("checkouts/create", "shopify_checkouts_create.json", ["Checkout Started"]),
        ("carts/update", "shopify_carts_update.json", ["Product Added"]),
        ("refunds/create", "shopify_refunds_create.json", ["Order Refunded"]),
        ("customers/create", "shopify_customers_create.json", [None]),
    ],
)
def test_shopify_payloads_are_accepted_and_mapped(
    client: TestClient, session: Session, topic: str, name: str, expected: list[str | None]
) -> None:
    response = send.shopify(client, topic, fixture(name))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "processed", "events": len(expected)}
    assert event_names(session) == expected
    stored = session.execute(text("SELECT source, topic, status FROM webhook_deliveries")).one()
    assert tuple(stored) == ("shopify", topic, "processed")


def test_woocommerce_order_is_accepted_and_mapped(client: TestClient, session: Session) -> None:
    response = send.woocommerce(client, "order.created", fixture("woocommerce_order_created.json"))
    assert response.json()["status"] == "processed"
    assert event_names(session) == ["Order Completed"]


def test_stripe_checkout_is_accepted_and_mapped(client: TestClient, session: Session) -> None:
    response = send.stripe(client, fixture("stripe_checkout_session_completed.json"))
    assert response.json()["status"] == "processed"
    assert event_names(session) == ["Order Completed"]


def test_bigcommerce_standard_webhook_is_accepted_and_mapped(
    client: TestClient, session: Session
) -> None:
    response = send.standard(client, "bigcommerce", fixture("bigcommerce_order_created.json"))
    assert response.json()["status"] == "processed"
    assert event_names(session) == ["Order Completed"]


def test_published_vectors_verify_end_to_end(client: TestClient, session: Session) -> None:
    """The platform's own example signature, sent as-is, passes the endpoint."""
    body = b'{"id":"exampleCartId","token":"exampleCartId"}'
    response = client.post(
        "/v1/webhooks/shopify",
        content=body,
        headers={
            "X-Shopify-Topic": "carts/create",
            "X-Shopify-Event-Id": "vector-1",
            "X-Shopify-Hmac-Sha256": "ZhG3CWlORI3HJKq0V+/Yl7ercfXczI9jj+RRoMSWa1w=",
        },
    )
    assert response.status_code == 200, response.text


# --- rejected deliveries store nothing ----------------------------------------------


def _tampered(client: TestClient) -> object:
    body = send.body_of(fixture("shopify_orders_create.json"))
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Event-Id": "t-1",
        "X-Shopify-Hmac-Sha256": sign_shopify(body, "shpss_test_secret"),
    }
    return client.post("/v1/webhooks/shopify", content=body.replace(b"1", b"2", 1), headers=headers)


@pytest.mark.parametrize(
    "deliver",
    [
        pytest.param(_tampered, id="shopify-tampered-body"),
        pytest.param(
            lambda c: send.shopify(
                c, "orders/create", fixture("shopify_orders_create.json"), secret="wrong"
            ),
            id="shopify-wrong-secret",
        ),
        pytest.param(
            lambda c: send.woocommerce(
                c, "order.created", fixture("woocommerce_order_created.json"), secret="wrong"
            ),
            id="woocommerce-wrong-secret",
        ),
        pytest.param(
            lambda c: send.stripe(
                c, fixture("stripe_checkout_session_completed.json"), at=int(time.time()) - 330
            ),
            id="stripe-stale",
        ),
        pytest.param(
            lambda c: send.stripe(
                c, fixture("stripe_checkout_session_completed.json"), at=int(time.time()) + 330
            ),
            id="stripe-future",
        ),
        pytest.param(
            lambda c: send.standard(
                c,
                "bigcommerce",
                fixture("bigcommerce_order_created.json"),
                at=int(time.time()) - 400,
            ),
            id="standard-stale",
        ),
        pytest.param(
            lambda c: c.post(
                "/v1/webhooks/shopify",
                content=b"{}",
                headers={"X-Shopify-Topic": "orders/create", "X-Shopify-Event-Id": "1"},
            ),
            id="shopify-missing-signature",
        ),
        pytest.param(
            lambda c: c.post("/v1/webhooks/bigcommerce", content=b"{}"),
            id="standard-missing-headers",
        ),
    ],
)
def test_bad_signature_is_401_and_stores_nothing(
    client: TestClient, session: Session, deliver
) -> None:
    response = deliver(client)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "signature" in response.json()["detail"].lower()
    assert count(session, "webhook_deliveries") == count(session, "events") == 0


def test_the_previous_secret_still_verifies_during_rotation(client: TestClient) -> None:
    payload = fixture("shopify_customers_create.json")
    for secret in ("shpss_test_secret_new", "shpss_test_secret"):
        assert send.shopify(client, "customers/create", payload, secret=secret).status_code == 200


def test_unconfigured_source_is_404(client: TestClient, session: Session) -> None:
    response = send.standard(client, "nobody", {"type": "track"})
    assert response.status_code == 404
    assert count(session, "webhook_deliveries") == 0


def test_body_over_the_limit_is_413(client: TestClient, session: Session) -> None:
    body = b'{"pad": "' + b"x" * 1_100_000 + b'"}'
    response = client.post(
        "/v1/webhooks/shopify",
        content=body,
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Event-Id": "big",
            "X-Shopify-Hmac-Sha256": sign_shopify(body, "shpss_test_secret"),
        },
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert count(session, "webhook_deliveries") == 0


def test_the_body_limit_is_the_setting_at_the_time_of_the_request(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"pad": "' + b"x" * 3000 + b'"}'
    with monkeypatch.context() as patch:
        patch.setenv("WEBHOOK_MAX_BYTES", "2048")
        get_settings.cache_clear()
        try:
            response = client.post(
                "/v1/webhooks/shopify",
                content=body,
                headers={
                    "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Event-Id": "over-2048",
                    "X-Shopify-Hmac-Sha256": sign_shopify(body, "shpss_test_secret"),
                },
            )
        finally:
            patch.undo()
            get_settings.cache_clear()
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]
    assert count(session, "webhook_deliveries") == 0


def test_woocommerce_creation_ping_gets_200(client: TestClient, session: Session) -> None:
    response = client.post(
        "/v1/webhooks/woocommerce",
        content=b"webhook_id=15",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ping"


# --- once, in order, never lost ------------------------------------------------------


def test_same_delivery_three_times_has_one_effect(client: TestClient, session: Session) -> None:
    payload = fixture("shopify_orders_create.json")
    statuses = [
        send.shopify(client, "orders/create", payload, event_id="evt-42").json()["status"]
        for _ in range(3)
    ]
    assert statuses == ["processed", "duplicate", "duplicate"]
    assert count(session, "webhook_deliveries") == 1
    assert count(session, "events") == 1
    assert resolve_all() == 1
    assert session.execute(text("SELECT orders_count FROM customers")).scalar_one() == 1


def test_out_of_order_customer_updates_end_with_the_newest_state(
    client: TestClient, session: Session
) -> None:
    older = fixture("shopify_customers_update.json")
    newer = copy.deepcopy(older)
    older["first_name"], older["updated_at"] = "Old", "2026-01-01T10:00:00-05:00"
    newer["first_name"], newer["updated_at"] = "New", "2026-01-02T10:00:00-05:00"
    send.shopify(client, "customers/update", newer)
    send.shopify(client, "customers/update", older)
    resolve_all()
    traits = session.execute(text("SELECT traits FROM customers")).scalar_one()
    assert traits["first_name"] == "New"


def test_unusable_topic_is_kept_as_ignored(client: TestClient, session: Session) -> None:
    response = send.shopify(client, "checkouts/delete", fixture("shopify_checkouts_delete.json"))
    assert response.json() == {"status": "ignored", "events": 0}
    assert session.execute(text("SELECT status FROM webhook_deliveries")).scalar_one() == "ignored"


def test_unmappable_delivery_is_quarantined_listed_and_replayable_after_a_fix(
    client: TestClient, session: Session, api_key
) -> None:
    broken = fixture("shopify_orders_create.json")
    broken["total_price"] = "twelve"
    response = send.shopify(client, "orders/create", broken)
    assert response.status_code == 200
    assert response.json()["status"] == "quarantined"

    admin = api_key("admin")
    [item] = client.get("/v1/quarantine", headers=admin).json()
    assert item["source"] == "shopify"
    assert item["field"] == "total_price"
    assert count(session, "events") == 0

    still = client.post(f"/v1/quarantine/{item['id']}/replay", headers=admin)
    assert still.status_code == 422
    assert still.headers["content-type"] == PROBLEM

    # The fix: the stored body is corrected (as a new mapping would make it readable).
    session.execute(
        text("UPDATE webhook_deliveries SET body = :b"),
        {"b": send.body_of(fixture("shopify_orders_create.json"))},
    )
    replayed = client.post(f"/v1/quarantine/{item['id']}/replay", headers=admin)
    assert replayed.json() == {"id": item["id"], "status": "replayed", "events": 1}
    assert event_names(session) == ["Order Completed"]
    assert client.get("/v1/quarantine", headers=admin).json() == []


# --- headers and fields longer than their columns ------------------------------------


def test_long_topic_and_ids_are_stored_not_500(client: TestClient, session: Session) -> None:
    payload = fixture("shopify_orders_create.json")
    long_id = "e" * 300
    first = send.shopify(client, "orders/" + "x" * 190, payload, event_id=long_id)
    again = send.shopify(client, "orders/" + "x" * 190, payload, event_id=long_id)
    assert (first.status_code, first.json()["status"]) == (200, "ignored")
    assert again.json()["status"] == "duplicate"

    stripe_event = fixture("stripe_checkout_session_completed.json")
    stripe_event["id"], stripe_event["type"] = "evt_" + "1" * 300, "t" * 300
    assert send.stripe(client, stripe_event).json()["status"] == "ignored"

    bigcommerce = fixture("bigcommerce_order_created.json")
    assert send.standard(client, "bigcommerce", bigcommerce, msg_id="m" * 300).status_code == 200
    assert send.standard(client, "bigcommerce", bigcommerce, msg_id="m" * 300).json() == {
        "status": "duplicate",
        "events": 0,
    }
    stored = session.execute(
        text("SELECT max(length(delivery_id)), max(length(topic)) FROM webhook_deliveries")
    ).one()
    assert stored[0] <= 255
    assert stored[1] <= 128
    assert count(session, "webhook_deliveries") == 3
