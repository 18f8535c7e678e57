"""The decision endpoint in process, on PostgreSQL: placements chosen by the shipped
placement rules, the inbox, the defaults; explain; errors; the decision log."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.actions import service as actions
from service.actions.models import Action
from service.auth.service import Scope
from service.decisions.log import LOG
from service.decisions.models import Decision, Exposure
from service.rules import service as rules
from service.settings import get_settings
from tests.test_events_api import track
from tests.test_rules_service import evaluate, send

SHIPPED = Path(__file__).resolve().parent.parent / "rules"
NOW = datetime.now(UTC).replace(microsecond=0)

CART_OFFER = """
ruleset: test_cart_offer
version: 1
rules:
  - id: cart_offer_now
    trigger: {event: Product Added}
    actions:
      - offer: {channel: inbox, offer: CART10, placement: cart_drawer, expires_in: 1h}
"""


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {
        "ingest": api_key(Scope.INGEST),
        "storefront": api_key(Scope.STOREFRONT),
        "marketer": api_key(Scope.MARKETER),
    }


@pytest.fixture
def active(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory)
    (directory / "test_cart_offer.yaml").write_text(CART_OFFER)
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    result = rules.reload(session, directory=directory, origin="cli")
    assert result.status == "active", result.errors
    return directory


def identify(user: str, *, marketing: bool = True, **traits: object) -> dict:
    return {
        "type": "identify",
        "userId": user,
        "anonymousId": f"anon-{user}",
        "timestamp": (NOW - timedelta(hours=2)).isoformat(),
        "traits": {"consent": {"marketing": marketing}, **traits},
    }


def decide(client: TestClient, keys, *, explain: bool = False, **body: object) -> dict:
    body.setdefault("placements", ["homepage_hero", "cart_drawer", "product_recs"])
    url = "/v1/decisions" + ("?explain=true" if explain else "")
    response = client.post(url, json=body, headers=keys["storefront"])
    assert response.status_code == 200, response.text
    return response.json()


def add_segment(session: Session, user: str, segment: str) -> str:
    customer = session.scalar(
        text("SELECT customer_id FROM identities WHERE kind = 'user_id' AND value = :u"),
        {"u": user},
    )
    session.execute(
        text(
            "INSERT INTO segment_memberships (customer_id, segment, added_by) "
            "VALUES (:c, :s, 'test')"
        ),
        {"c": customer, "s": segment},
    )
    return str(customer)


def test_an_unknown_visitor_gets_every_default(client: TestClient, keys, active: Path) -> None:
    body = decide(client, keys, anonymous_id="never-seen")
    assert body["customer_id"] is None
    assert body["degraded"] is False
    assert body["segments"] == []
    contents = {name: p["content"] for name, p in body["placements"].items()}
    assert contents == {
        "homepage_hero": {
            "id": "seasonal_collection",
            "params": {},
            "source": "default",
            "rule": None,
        },
        "cart_drawer": {"id": "cart_reassurance", "params": {}, "source": "default", "rule": None},
        "product_recs": {"id": "bestsellers", "params": {}, "source": "default", "rule": None},
    }
    assert all(p["offers"] == [] for p in body["placements"].values())
    (version,) = body["rule_versions"]
    assert (version["ruleset"], version["version"]) == ("placements", 1)
    assert version["version_id"] is not None


def test_a_high_value_customer_gets_premium_content_on_the_homepage(
    client: TestClient, session: Session, keys, active: Path
) -> None:
    send(client, keys, identify("hv1", first_name="Ada"))
    evaluate(session, now=NOW)
    customer = add_segment(session, "hv1", "high_value")
    for who in ({"user_id": "hv1"}, {"anonymous_id": "anon-hv1"}, {"customer_id": customer}):
        body = decide(client, keys, placements=["homepage_hero"], **who)
        assert body["customer_id"] == customer
        assert body["segments"] == ["high_value"]
        assert body["placements"]["homepage_hero"]["content"] == {
            "id": "premium_collection",
            "params": {"first_name": "Ada"},
            "source": "rule",
            "rule": "placements/premium_hero",
        }


def test_priority_decides_and_the_answer_is_the_same_each_time(
    client: TestClient, session: Session, keys, active: Path
) -> None:
    send(client, keys, identify("hv2"))
    send(
        client,
        keys,
        track(
            "Order Completed",
            user="hv2",
            order_id="o-hv2",
            total="20.00",
            currency="USD",
            timestamp=(NOW - timedelta(hours=1)).isoformat(),
        ),
    )
    evaluate(session, now=NOW)
    first = decide(client, keys, user_id="hv2", placements=["homepage_hero"])
    assert first["placements"]["homepage_hero"]["content"]["id"] == "welcome_back"
    add_segment(session, "hv2", "high_value")  # premium_hero has the higher priority
    second = decide(client, keys, user_id="hv2", placements=["homepage_hero"], explain=True)
    explained = {e["rule"]: e for e in second["placements"]["homepage_hero"]["explain"]}
    assert explained["placements/premium_hero"]["matched"] is True
    assert explained["placements/welcome_back_hero"]["matched"] is True
    assert explained["placements/premium_hero"]["facts"] == {"profile.segments": ["high_value"]}
    assert second["placements"]["homepage_hero"]["content"]["id"] == "premium_collection"
    third = decide(client, keys, user_id="hv2", placements=["homepage_hero"], explain=True)
    assert third["placements"] == second["placements"]
    assert third["decision_id"] != second["decision_id"]


def test_context_decides_and_explain_says_why_a_rule_did_not_match(
    client: TestClient, keys, active: Path
) -> None:
    small = decide(client, keys, placements=["cart_drawer"], context={"cart": {"value": 20}})
    assert small["placements"]["cart_drawer"]["content"]["id"] == "free_shipping_nudge"
    assert small["placements"]["cart_drawer"]["content"]["params"] == {"cart_value": 20.0}
    big = decide(
        client, keys, placements=["cart_drawer"], context={"cart": {"value": 80}}, explain=True
    )
    assert big["placements"]["cart_drawer"]["content"]["source"] == "default"
    (why,) = big["placements"]["cart_drawer"]["explain"]
    assert why == {
        "rule": "placements/free_shipping_nudge",
        "priority": 0,
        "matched": False,
        "facts": {"context.cart.value": 80.0},
    }


def test_a_waiting_cart_offer_shows_in_the_cart_drawer_until_it_expires(
    client: TestClient, session: Session, keys, active: Path
) -> None:
    send(client, keys, identify("c1"))
    added = track(
        "Product Added",
        user="c1",
        cart_id="cart-1",
        product_id="p1",
        timestamp=(NOW - timedelta(minutes=5)).isoformat(),
    )
    send(client, keys, added)
    evaluate(session, now=NOW)
    (action,) = session.scalars(select(Action).where(Action.channel == "inbox"))
    assert actions.claim(session, action_id=action.id, now=NOW) is None  # stored: inbox
    session.flush()
    body = decide(client, keys, user_id="c1", placements=["cart_drawer", "homepage_hero"])
    (offer,) = body["placements"]["cart_drawer"]["offers"]
    assert (offer["offer"], offer["source"]) == ("CART10", "inbox")
    assert body["placements"]["homepage_hero"]["offers"] == []
    # Without marketing consent it is not shown.
    client.put("/v1/profiles/user_id:c1/consent", json={"marketing": False}, headers=keys["ingest"])
    hidden = decide(client, keys, user_id="c1", placements=["cart_drawer"])
    assert hidden["placements"]["cart_drawer"]["offers"] == []
    client.put("/v1/profiles/user_id:c1/consent", json={"marketing": True}, headers=keys["ingest"])
    # An hour later it has expired.
    session.execute(text("UPDATE inbox_items SET expires_at = now() - interval '1 second'"))
    later = decide(client, keys, user_id="c1", placements=["cart_drawer"])
    assert later["placements"]["cart_drawer"]["offers"] == []


def test_bad_requests_name_the_field(client: TestClient, keys, active: Path) -> None:
    cases = [
        ({"placements": ["homepage_hero", "nowhere"]}, "body.placements.1", "unknown placement"),
        ({"placements": []}, "body.placements", ""),
        (
            {"placements": ["homepage_hero"], "context": {"country": "gb"}},
            "body.context.country",
            "",
        ),
        ({"placements": ["homepage_hero"], "customer_id": "x"}, "body.customer_id", ""),
        ({"placements": ["homepage_hero", "homepage_hero"]}, "body.placements", "twice"),
    ]
    for body, field, words in cases:
        response = client.post("/v1/decisions", json=body, headers=keys["storefront"])
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        errors = response.json()["errors"]
        assert any(e["field"] == field and words in e["message"] for e in errors), (body, errors)


def test_a_key_is_required_and_must_hold_storefront(client: TestClient, keys, active: Path) -> None:
    body = {"placements": ["homepage_hero"]}
    assert client.post("/v1/decisions", json=body).status_code == 401
    unknown = client.post("/v1/decisions", json=body, headers={"Authorization": "Bearer pk_nope"})
    assert unknown.status_code == 401
    wrong = client.post("/v1/decisions", json=body, headers=keys["ingest"])
    assert wrong.status_code == 403


def test_each_decision_is_logged_with_its_exposures_after_the_response(
    client: TestClient, session: Session, keys, active: Path
) -> None:
    LOG.flush()
    body = decide(client, keys, anonymous_id="logged", placements=["homepage_hero", "cart_drawer"])
    assert session.scalar(select(Decision).where(Decision.id == body["decision_id"])) is None
    assert LOG.flush() == 1
    row = session.scalar(select(Decision).where(Decision.id == body["decision_id"]))
    assert row is not None
    assert row.degraded is False
    assert row.placements["homepage_hero"]["content"]["id"] == "seasonal_collection"
    shown = session.execute(
        select(Exposure.placement, Exposure.kind, Exposure.item, Exposure.source).where(
            Exposure.decision_id == row.id
        )
    ).all()
    assert sorted(shown) == [
        ("cart_drawer", "content", "cart_reassurance", "default"),
        ("homepage_hero", "content", "seasonal_collection", "default"),
    ]
