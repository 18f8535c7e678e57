"""Input that PostgreSQL or Python cannot take as-is: each is a 4xx or a quarantined
event, never a 500, and never fails the good events beside it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from tests.support import resolve_all
from tests.support import webhooks as send
from tests.support.events import track
from tests.support.webhooks import fixture


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {s.value: api_key(s) for s in (Scope.INGEST, Scope.MARKETER, Scope.ADMIN)}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (track("Product Viewed", anon="a1", timestamp="0001-01-01T00:00:00+01:00"), "out of range"),
        (track("Product Viewed", anon="a1", n=10**20), "cannot be stored"),
        (track("Product Viewed", anon="a1", product_id="p\u0000"), "NUL"),
        (track("Product Viewed", anon="undefined"), "empty or blocked"),
    ],
    ids=["timestamp-overflow", "integer-beyond-64-bits", "nul-character", "only-blocked-ids"],
)
def test_an_unstorable_event_is_rejected_alone(
    client: TestClient, session: Session, keys, bad: dict, reason: str
) -> None:
    good = track("Product Viewed", anon="a1", product_id="p1")
    response = client.post("/v1/events", json={"batch": [good, bad]}, headers=keys["ingest"])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"]
    assert reason in results[1]["reason"]
    listed = client.get("/v1/quarantine", headers=keys["admin"])
    assert listed.status_code == 200
    assert len(listed.json()) == 1


def test_a_lone_surrogate_is_rejected_alone(client: TestClient, keys) -> None:
    body = (
        b'{"type":"track","event":"Product Viewed","anonymousId":"a1","properties":{"x":"\\ud800"}}'
    )
    response = client.post(
        "/v1/events", content=body, headers={**keys["ingest"], "content-type": "application/json"}
    )
    # One event sent alone and refused is a 422 problem naming the field, with its result.
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": "properties.x", "message": response.json()["results"][0]["reason"]}
    ]
    assert response.json()["rejected"] == 1
    assert client.get("/v1/quarantine", headers=keys["admin"]).status_code == 200


def test_the_quarantine_lists_a_payload_with_a_huge_integer(client: TestClient, keys) -> None:
    body = b'{"type":"bogus","anonymousId":"a1","n":1' + b"0" * 400 + b"}"
    response = client.post(
        "/v1/events", content=body, headers={**keys["ingest"], "content-type": "application/json"}
    )
    assert response.json()["rejected"] == 1
    [item] = client.get("/v1/quarantine", headers=keys["admin"]).json()
    assert item["payload"]["n"] == 10**400


def test_replaying_an_api_event_that_has_an_event_id_field_maps_it_again(
    client: TestClient, keys
) -> None:
    bad = {"type": "track", "anonymousId": "a1", "messageId": "x", "event_id": "abc"}
    client.post("/v1/events", json={"batch": [bad]}, headers=keys["ingest"])
    [item] = client.get("/v1/quarantine", headers=keys["admin"]).json()
    replay = client.post(f"/v1/quarantine/{item['id']}/replay", headers=keys["admin"])
    assert replay.status_code == 422  # still no `event`: mapped again, not mistaken
    assert "event" in replay.json()["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"currency": "EU\u0000"},
        {"created_at": "0001-01-01T00:00:00+01:00"},
    ],
    ids=["nul-character", "timestamp-overflow"],
)
def test_an_unstorable_webhook_is_quarantined_not_a_500(
    client: TestClient, session: Session, change: dict
) -> None:
    order = {**fixture("shopify_orders_create.json"), **change}
    response = send.shopify(client, "orders/create", order)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "quarantined"
    assert session.execute(text("SELECT count(*) FROM quarantine")).scalar_one() == 1


def test_a_segment_shaped_webhook_keeps_email_out_of_properties(
    client: TestClient, session: Session, keys
) -> None:
    body = {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": "a9",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"product_id": "p1", "email": "ann@example.com"},
    }
    assert send.standard(client, "bigcommerce", body).json()["status"] == "processed"
    stored = session.execute(text("SELECT properties::text FROM events")).scalar_one()
    assert "ann@example.com" not in stored
    resolve_all()
    profile = client.get("/v1/profiles/email:ann@example.com", headers=keys["marketer"])
    assert profile.status_code == 200


def test_a_profile_ref_with_a_nul_is_404(client: TestClient, keys) -> None:
    response = client.get("/v1/profiles/user_id:a%00b", headers=keys["marketer"])
    assert response.status_code == 404
