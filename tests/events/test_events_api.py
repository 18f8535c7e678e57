from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from tests.support import resolve_all
from tests.support.events import track

PROBLEM = "application/problem+json"


@pytest.fixture
def ingest(api_key) -> dict[str, str]:
    return api_key(Scope.INGEST)


def test_a_batch_reports_each_event_and_one_bad_event_rejects_only_itself(
    client: TestClient, session: Session, ingest: dict[str, str]
) -> None:
    batch = [
        track("Product Viewed", anon="a1", product_id="p1"),
        {"type": "track", "anonymousId": "a1", "messageId": "no-name"},  # no `event`
        {"type": "launch", "anonymousId": "a1"},  # unknown type
        track("Product Viewed", anon="a1", product_id="p2", timestamp="yesterday-ish"),
    ]
    response = client.post("/v1/events", json={"batch": batch}, headers=ingest)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 3)
    statuses = [(r["status"], r["field"]) for r in body["results"]]
    assert statuses == [
        ("accepted", None),
        ("rejected", None),
        ("rejected", "type"),
        ("rejected", "timestamp"),
    ]
    assert "event" in body["results"][1]["reason"]
    held = session.execute(text("SELECT reason, field FROM quarantine ORDER BY id")).all()
    assert len(held) == 3
    assert session.execute(text("SELECT count(*) FROM events")).scalar_one() == 1


def test_single_event_body_is_accepted(client: TestClient, ingest: dict[str, str]) -> None:
    response = client.post("/v1/events", json=track("Cart Viewed", user="u1"), headers=ingest)
    assert response.json()["accepted"] == 1


def test_duplicate_message_id_has_one_effect_within_and_across_requests(
    client: TestClient, session: Session, ingest: dict[str, str]
) -> None:
    event = track("Product Viewed", anon="a1", product_id="p1")
    first = client.post("/v1/events", json={"batch": [event, event]}, headers=ingest).json()
    again = client.post("/v1/events", json=event, headers=ingest).json()
    assert [r["status"] for r in first["results"]] == ["accepted", "duplicate"]
    assert [r["status"] for r in again["results"]] == ["duplicate"]
    assert session.execute(text("SELECT count(*) FROM events")).scalar_one() == 1
    resolve_all()
    views = session.execute(text("SELECT views FROM product_views")).scalar_one()
    assert views == 1


def test_event_without_message_id_is_deduplicated_by_content(
    client: TestClient, session: Session, ingest: dict[str, str]
) -> None:
    event = {
        "type": "track",
        "event": "Cart Viewed",
        "userId": "u9",
        "timestamp": "2026-11-20T10:00:00Z",
    }
    client.post("/v1/events", json=event, headers=ingest)
    client.post("/v1/events", json=event, headers=ingest)
    assert session.execute(text("SELECT count(*) FROM events")).scalar_one() == 1


def test_limits(client: TestClient, ingest: dict[str, str]) -> None:
    big = track("Product Viewed", anon="a1", blob="x" * 40_000)
    result = client.post("/v1/events", json=big, headers=ingest).json()["results"][0]
    assert result["status"] == "rejected"
    assert "larger than" in result["reason"]

    too_many = {"batch": [track("Cart Viewed", anon="a") for _ in range(501)]}
    response = client.post("/v1/events", json=too_many, headers=ingest)
    assert response.status_code in (413, 422)
    assert response.headers["content-type"] == PROBLEM

    huge = b'{"batch": [' + b",".join([b'{"pad": "' + b"x" * 1000 + b'"}'] * 600) + b"]}"
    response = client.post("/v1/events", content=huge, headers=ingest)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


def test_malformed_json_is_422_naming_the_body(client: TestClient, ingest: dict[str, str]) -> None:
    response = client.post("/v1/events", content=b"{nope", headers=ingest)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


def test_events_api_needs_the_ingest_scope(client: TestClient, api_key) -> None:
    event = track("Cart Viewed", anon="a")
    assert client.post("/v1/events", json=event).status_code == 401
    denied = client.post("/v1/events", json=event, headers=api_key(Scope.STOREFRONT))
    assert denied.status_code == 403


def test_an_event_that_cannot_be_resolved_is_set_aside_without_holding_back_the_rest(
    client: TestClient, session: Session, ingest: dict[str, str], api_key
) -> None:
    bad = track("Order Completed", user="u-bad", order_id="x" * 300, total="1", currency="USD")
    good = [track("Product Viewed", anon=f"a{i}", product_id="p1") for i in range(3)]
    client.post("/v1/events", json={"batch": [good[0], bad, *good[1:]]}, headers=ingest)

    assert resolve_all() == 4
    rows = session.execute(
        text("SELECT customer_id IS NOT NULL AS resolved, resolve_error FROM events ORDER BY id")
    ).all()
    assert [r.resolved for r in rows] == [True, False, True, True]
    assert "could not be put on a profile" in rows[1].resolve_error

    admin = api_key(Scope.ADMIN)
    [item] = client.get("/v1/quarantine", headers=admin).json()
    assert item["reason"] == rows[1].resolve_error
    # Replaying hands it back to the resolvers (here it fails again, and is set aside again).
    replayed = client.post(f"/v1/quarantine/{item['id']}/replay", headers=admin)
    assert replayed.json()["status"] == "replayed"
    assert resolve_all() == 1
    assert len(client.get("/v1/quarantine", headers=admin).json()) == 1


def test_with_the_broker_down_events_are_accepted_and_resolved_later(
    client: TestClient, session: Session, ingest: dict[str, str], monkeypatch
) -> None:
    """The after-commit nudge cannot reach the broker: the request still succeeds (the
    nudge is sent from a background thread), and the stored events wait for the sweep."""
    from tests.support import clear_caches

    with monkeypatch.context() as patch:
        patch.setenv("BROKER_URL", "amqp://guest:guest@127.0.0.1:1//")
        clear_caches()
        try:
            response = client.post(
                "/v1/events", json=track("Cart Viewed", user="u-outage"), headers=ingest
            )
        finally:
            patch.undo()
            clear_caches()
    assert response.json()["accepted"] == 1
    unresolved = session.execute(text("SELECT count(*) FROM events WHERE customer_id IS NULL"))
    assert unresolved.scalar_one() == 1
    assert resolve_all() == 1  # what the scheduler's sweep does once a worker runs
