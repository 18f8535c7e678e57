"""Segment's HTTP Tracking API: the SDKs' auth, gzip, clock-skew correction and calls."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.app import create_app
from service.auth.service import Scope
from service.settings import get_settings
from tests.support import resolve_all

PROBLEM = "application/problem+json"


def write_key(api_key) -> str:
    return api_key(Scope.INGEST)["Authorization"].removeprefix("Bearer ")


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(event: str = "Product Viewed", **extra: object) -> dict[str, object]:
    return {
        "type": "track",
        "event": event,
        "anonymousId": "anon-1",
        "properties": {"product_id": "p1"},
    } | extra


def rows(session: Session, sql: str) -> list:
    return list(session.execute(text(sql)).all())


def test_batch_with_basic_auth_stores_every_call_type(
    client: TestClient, session: Session, api_key
) -> None:
    batch = [
        track(messageId="m1"),
        {"type": "identify", "userId": "u1", "traits": {"first_name": "Ann"}, "messageId": "m2"},
        {"type": "page", "anonymousId": "anon-1", "name": "Home", "messageId": "m3"},
        {"type": "screen", "anonymousId": "anon-1", "name": "Cart", "messageId": "m4"},
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme", "email": "office@acme.example"},
            "messageId": "m5",
        },
    ]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(write_key(api_key)))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 5, "duplicates": 0, "rejected": 0}
    stored = rows(session, "SELECT message_id, type, name, properties FROM events ORDER BY id")
    assert [(r[1], r[2]) for r in stored] == [
        ("track", "Product Viewed"),
        ("identify", None),
        ("page", "Home"),
        ("screen", "Cart"),
        ("group", None),
    ]
    # A group's traits describe the account: its email is not the user's identity.
    assert stored[4][3] == {
        "group_id": "acme",
        "group_traits": {"name": "Acme", "email": "office@acme.example"},
    }
    keys = session.execute(text("SELECT identity_keys FROM events WHERE message_id = 'm5'"))
    assert [k["kind"] for k in keys.scalar_one()] == ["user_id"]


def test_write_key_in_the_body_authenticates(client: TestClient, api_key) -> None:
    body = {"batch": [track()], "writeKey": write_key(api_key)}
    assert client.post("/v1/batch", json=body).json()["accepted"] == 1


def test_missing_unknown_or_unscoped_key_is_refused_with_sdk_readable_errors(
    client: TestClient, session: Session, api_key
) -> None:
    storefront = api_key(Scope.STOREFRONT)["Authorization"].removeprefix("Bearer ")
    cases = [
        ({}, 401, "unauthorized"),
        (basic("pk_00000000_" + "0" * 64), 401, "unauthorized"),
        ({"Authorization": "Basic !!!"}, 401, "unauthorized"),
        (basic(storefront), 403, "forbidden"),
    ]
    for headers, status, code in cases:
        response = client.post("/v1/batch", json={"batch": [track()]}, headers=headers)
        assert response.status_code == status
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == code
        assert response.json()["message"] == response.json()["detail"]
    assert rows(session, "SELECT id FROM events") == []


def test_gzip_bodies_are_read_and_bounded(client: TestClient, api_key) -> None:
    headers = basic(write_key(api_key)) | {
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    packed = gzip.compress(json.dumps({"batch": [track()]}).encode())
    assert client.post("/v1/batch", content=packed, headers=headers).json()["accepted"] == 1

    bomb = gzip.compress(b" " * (2 << 20))  # 2 MB of spaces in about 2 KB
    response = client.post("/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "invalid_request"

    response = client.post("/v1/batch", content=b"not gzip", headers=headers)
    assert response.status_code == 400
    assert "gzip" in response.json()["detail"]


def test_malformed_requests_are_400_with_code(client: TestClient, api_key) -> None:
    headers = basic(write_key(api_key)) | {"Content-Type": "application/json"}
    for body in (b"{", b"[]", b'{"batch": {}}'):
        response = client.post("/v1/batch", content=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["code"] == "invalid_request"


def test_sent_at_corrects_a_wrong_device_clock(
    client: TestClient, session: Session, api_key
) -> None:
    # The device's clock is a year behind; it sent the event 30 s after it happened.
    happened = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    body = {
        "batch": [track(timestamp=happened.isoformat())],
        "sentAt": (happened + timedelta(seconds=30)).isoformat(),
    }
    before = datetime.now(UTC)
    client.post("/v1/batch", json=body, headers=basic(write_key(api_key)))
    occurred = session.execute(text("SELECT occurred_at FROM events")).scalar_one()
    assert before - timedelta(seconds=31) <= occurred <= datetime.now(UTC) - timedelta(seconds=29)


def test_without_sent_at_the_timestamp_is_kept(
    client: TestClient, session: Session, api_key
) -> None:
    body = {"batch": [track(timestamp="2025-01-01T12:00:00Z")]}
    client.post("/v1/batch", json=body, headers=basic(write_key(api_key)))
    occurred = session.execute(text("SELECT occurred_at FROM events")).scalar_one()
    assert occurred == datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_a_bad_event_is_quarantined_and_the_rest_kept(
    client: TestClient, session: Session, api_key
) -> None:
    body = {"batch": [track(), {"type": "track", "anonymousId": "a"}, "nonsense"]}
    response = client.post("/v1/batch", json=body, headers=basic(write_key(api_key)))
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0, "rejected": 2}
    assert len(rows(session, "SELECT id FROM quarantine")) == 2


def test_a_duplicate_message_id_is_one_event(client: TestClient, session: Session, api_key) -> None:
    headers = basic(write_key(api_key))
    first = client.post("/v1/track", json=track(messageId="same"), headers=headers)
    again = client.post("/v1/batch", json={"batch": [track(messageId="same")]}, headers=headers)
    assert first.json()["accepted"] == 1
    assert again.json()["duplicates"] == 1
    assert len(rows(session, "SELECT id FROM events")) == 1


def test_single_calls_take_their_type_from_the_path(
    client: TestClient, session: Session, api_key
) -> None:
    headers = basic(write_key(api_key))
    response = client.post(
        "/v1/page", json={"anonymousId": "anon-1", "name": "Home"}, headers=headers
    )
    assert response.json()["accepted"] == 1
    assert rows(session, "SELECT type, name FROM events") == [("page", "Home")]


def test_batch_context_applies_to_each_event(client: TestClient, session: Session, api_key) -> None:
    body = {
        "batch": [track(context={"page": {"path": "/p1"}})],
        "context": {"library": {"name": "analytics-python"}, "page": {"path": "/"}},
    }
    client.post("/v1/batch", json=body, headers=basic(write_key(api_key)))
    context = session.execute(text("SELECT context FROM events")).scalar_one()
    assert context == {"library": {"name": "analytics-python"}, "page": {"path": "/p1"}}


def test_alias_merges_the_anonymous_profile_into_the_known_one(
    client: TestClient, session: Session, api_key
) -> None:
    headers = basic(write_key(api_key))
    client.post("/v1/track", json=track(anonymousId="browser-7"), headers=headers)
    client.post("/v1/identify", json={"userId": "user-7", "traits": {"x": 1}}, headers=headers)
    resolve_all()
    assert session.execute(text("SELECT count(*) FROM customers")).scalar_one() == 2

    alias = {"previousId": "browser-7", "userId": "user-7"}
    assert client.post("/v1/alias", json=alias, headers=headers).json()["accepted"] == 1
    resolve_all()
    owners = rows(session, "SELECT DISTINCT customer_id FROM events")
    assert len(owners) == 1
    merges = session.execute(text("SELECT count(*) FROM profile_merges")).scalar_one()
    assert merges == 1


def test_alias_without_previous_id_is_rejected(client: TestClient, api_key) -> None:
    response = client.post(
        "/v1/alias", json={"userId": "user-7"}, headers=basic(write_key(api_key))
    )
    assert response.status_code == 200
    assert response.json()["rejected"] == 1


def test_a_configured_shop_origin_may_send_from_the_browser(
    monkeypatch: pytest.MonkeyPatch, connection: object, api_key
) -> None:
    shop = "https://shop.example.com"
    with monkeypatch.context() as patch:
        patch.setenv("CORS_ALLOWED_ORIGINS", json.dumps([shop]))
        get_settings.cache_clear()
        app = create_app()
    get_settings.cache_clear()
    with TestClient(app) as browser:
        preflight = browser.options(
            "/v1/batch",
            headers={"Origin": shop, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == shop
        # analytics.js posts text/plain (no preflight) with the write key in the body.
        sent = browser.post(
            "/v1/batch",
            content=json.dumps({"batch": [track()], "writeKey": write_key(api_key)}),
            headers={"Origin": shop, "Content-Type": "text/plain"},
        )
        assert sent.json()["accepted"] == 1
        assert sent.headers["access-control-allow-origin"] == shop
        other = browser.post(
            "/v1/batch", json={"batch": [track()]}, headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_no_origin_is_allowed_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/v1/batch",
        headers={"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
