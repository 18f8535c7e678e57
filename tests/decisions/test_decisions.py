"""The decision endpoint in process, on PostgreSQL: placements chosen by the shipped
placement rules, the inbox, the defaults; explain; errors; the decision log.

The endpoint reads on a connection pool of its own, so these tests commit, to a
database of their own; each test uses its own customers."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from service import db, flow
from service.actions import claims
from service.actions.models import Action
from service.app import create_app
from service.auth.service import Scope, create_key
from service.decisions import reader as reader_module
from service.decisions import repository as decisions_repository
from service.decisions.models import Decision, Exposure
from service.decisions.reader import Reader
from service.events.identity import USER_ID, lookup_key
from service.rules import deployments
from service.settings import get_settings
from tests.support import clear_caches, resolve_all
from tests.support.events import track

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
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


@dataclass
class Shop:
    client: TestClient
    keys: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def shop(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    url = make_database("decisions")
    directory = tmp_path_factory.mktemp("decisions") / "rules"
    shutil.copytree(SHIPPED, directory)
    (directory / "test_cart_offer.yaml").write_text(CART_OFFER)
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "RULES_DIR")}
    os.environ.update(DATABASE_URL=url, RULES_DIR=str(directory))
    clear_caches()
    try:
        with db.transaction() as session:
            assert deployments.reload(session, directory=directory, origin="cli").status == "active"
            keys = {}
            for scope in (Scope.INGEST, Scope.STOREFRONT, Scope.MARKETER):
                new = create_key(session, name=scope.value, scopes=[scope])
                keys[scope.value] = {"Authorization": f"Bearer {new.key}"}
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield Shop(client, keys)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        clear_caches()


def send(shop: Shop, *events: dict) -> None:
    response = shop.client.post(
        "/v1/events", json={"batch": list(events)}, headers=shop.keys["ingest"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events), response.json()
    resolve_all()
    with db.transaction() as session:
        while flow.evaluate_pending(session, now=NOW):
            pass


def identify(user: str, *, marketing: bool = True, **traits: object) -> dict:
    return {
        "type": "identify",
        "userId": user,
        "anonymousId": f"anon-{user}",
        "timestamp": (NOW - timedelta(hours=2)).isoformat(),
        "traits": {"consent": {"marketing": marketing}, **traits},
    }


def decide(shop: Shop, *, explain: bool = False, **body: object) -> dict:
    body.setdefault("placements", ["homepage_hero", "cart_drawer", "product_recs"])
    url = "/v1/decisions" + ("?explain=true" if explain else "")
    response = shop.client.post(url, json=body, headers=shop.keys["storefront"])
    assert response.status_code == 200, response.text
    return response.json()


def customer_of(user: str) -> str:
    with db.transaction() as session:
        customer = session.scalar(
            text("SELECT customer_id FROM identities WHERE kind = 'user_id' AND value = :u"),
            {"u": user},
        )
    return str(customer)


def test_an_unknown_visitor_gets_every_default(shop: Shop) -> None:
    body = decide(shop, anonymous_id="never-seen")
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


def order(user: str, order_id: str, total: str) -> dict:
    return track(
        "Order Completed",
        user=user,
        order_id=order_id,
        total=total,
        currency="USD",
        timestamp=(NOW - timedelta(hours=1)).isoformat(),
    )


def test_a_high_value_customer_gets_premium_content_on_the_homepage(shop: Shop) -> None:
    send(shop, identify("hv1", first_name="Ada"))
    send(shop, order("hv1", "o-hv1", "750.00"))  # the shipped high_value: 500 or more spent
    customer = customer_of("hv1")
    for who in ({"user_id": "hv1"}, {"anonymous_id": "anon-hv1"}, {"customer_id": customer}):
        body = decide(shop, placements=["homepage_hero"], **who)
        assert body["customer_id"] == customer
        assert "high_value" in body["segments"]
        assert body["placements"]["homepage_hero"]["content"] == {
            "id": "premium_collection",
            "params": {"first_name": "Ada"},
            "source": "rule",
            "rule": "placements/premium_hero",
        }


def test_priority_decides_and_the_answer_is_the_same_each_time(shop: Shop) -> None:
    send(shop, identify("hv2"))
    send(shop, order("hv2", "o-hv2", "20.00"))
    first = decide(shop, user_id="hv2", placements=["homepage_hero"])
    assert "high_value" not in first["segments"]
    assert first["placements"]["homepage_hero"]["content"]["id"] == "welcome_back"
    send(shop, order("hv2", "o-hv2-b", "600.00"))  # now high_value: premium_hero has priority
    second = decide(shop, user_id="hv2", placements=["homepage_hero"], explain=True)
    explained = {e["rule"]: e for e in second["placements"]["homepage_hero"]["explain"]}
    assert explained["placements/premium_hero"]["matched"] is True
    assert explained["placements/welcome_back_hero"]["matched"] is True
    assert "high_value" in explained["placements/premium_hero"]["facts"]["profile.segments"]
    assert second["placements"]["homepage_hero"]["content"]["id"] == "premium_collection"
    third = decide(shop, user_id="hv2", placements=["homepage_hero"], explain=True)
    assert third["placements"] == second["placements"]
    assert third["decision_id"] != second["decision_id"]


class Clock:
    """The reader's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


def test_a_cached_snapshot_is_served_for_at_most_its_ttl(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(reader_module, "time", clock)
    monkeypatch.setattr(get_settings(), "decision_cache_ttl_s", 1.0)
    send(shop, identify("ttl1"), order("ttl1", "o-ttl1", "20.00"))
    first = decide(shop, user_id="ttl1", placements=["homepage_hero"])
    assert "high_value" not in first["segments"]
    send(shop, order("ttl1", "o-ttl1-b", "900.00"))  # committed: now in high_value
    clock.now += 0.99
    again = decide(shop, user_id="ttl1", placements=["homepage_hero"])
    widget = decide(shop, user_id="ttl1", placements=["cart_drawer"])  # another placement
    assert again["segments"] == first["segments"]  # within the TTL: the cached snapshot
    assert widget["segments"] == first["segments"]  # one snapshot serves any placement
    clock.now += 0.02  # the TTL has passed since the read
    fresh = decide(shop, user_id="ttl1", placements=["homepage_hero"])
    assert "high_value" in fresh["segments"]
    assert fresh["placements"]["homepage_hero"]["content"]["id"] == "premium_collection"


def identity_of(user: str) -> tuple[str, str]:
    key = lookup_key(USER_ID, user)
    assert key is not None
    return key.kind, key.value


def test_reads_for_one_customer_at_the_same_moment_share_one_query(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page whose widgets ask one placement each, at once: one snapshot read."""
    send(shop, identify("w1"))
    calls: list[object] = []
    original = decisions_repository.snapshot

    async def counted(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("identity"))
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decisions_repository, "snapshot", counted)

    async def page() -> list[object]:
        pool = decisions_repository.open_pool(url=db.database_url(), budget_ms=5000, size=2)
        await pool.open()
        try:
            reader = Reader(pool)
            who = {"key_hash": None, "customer_id": None, "identity": identity_of("w1")}
            other = {**who, "identity": identity_of("someone-else")}
            return await asyncio.gather(
                reader.read(**who), reader.read(**who), reader.read(**who), reader.read(**other)
            )
        finally:
            await pool.close()

    reads = asyncio.run(page())
    assert all(r is not None for r in reads)
    assert reads[0] is reads[1] is reads[2]  # the same read, answered to all three
    assert reads[3] is not reads[0]
    assert len(calls) == 2  # one per customer


def test_context_decides_and_explain_says_why_a_rule_did_not_match(shop: Shop) -> None:
    small = decide(shop, placements=["cart_drawer"], context={"cart": {"value": 20}})
    assert small["placements"]["cart_drawer"]["content"]["id"] == "free_shipping_nudge"
    assert small["placements"]["cart_drawer"]["content"]["params"] == {"cart_value": 20.0}
    big = decide(shop, placements=["cart_drawer"], context={"cart": {"value": 80}}, explain=True)
    assert big["placements"]["cart_drawer"]["content"]["source"] == "default"
    (why,) = big["placements"]["cart_drawer"]["explain"]
    assert why == {
        "rule": "placements/free_shipping_nudge",
        "priority": 0,
        "matched": False,
        "facts": {"context.cart.value": 80.0},
    }


def test_a_waiting_cart_offer_shows_in_the_cart_drawer_until_it_expires(shop: Shop) -> None:
    send(shop, identify("c1"))
    added = track(
        "Product Added",
        user="c1",
        cart_id="cart-1",
        product_id="p1",
        timestamp=(NOW - timedelta(minutes=5)).isoformat(),
    )
    send(shop, added)
    with db.transaction() as session:
        customer = session.scalar(
            text("SELECT customer_id FROM identities WHERE kind = 'user_id' AND value = 'c1'")
        )
        (action,) = session.scalars(
            select(Action).where(Action.channel == "inbox", Action.customer_id == customer)
        )
        assert claims.claim(session, action_id=action.id, now=NOW) is None  # stored: inbox
    body = decide(shop, user_id="c1", placements=["cart_drawer", "homepage_hero"])
    (offer,) = body["placements"]["cart_drawer"]["offers"]
    assert (offer["offer"], offer["source"]) == ("CART10", "inbox")
    assert body["placements"]["homepage_hero"]["offers"] == []
    # Without marketing consent it is not shown.
    shop.client.put(
        "/v1/profiles/user_id:c1/consent", json={"marketing": False}, headers=shop.keys["ingest"]
    )
    hidden = decide(shop, user_id="c1", placements=["cart_drawer"])
    assert hidden["placements"]["cart_drawer"]["offers"] == []
    shop.client.put(
        "/v1/profiles/user_id:c1/consent", json={"marketing": True}, headers=shop.keys["ingest"]
    )
    # An hour later it has expired.
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE inbox_items SET expires_at = now() - interval '1 second' "
                "WHERE customer_id = :c"
            ),
            {"c": customer},
        )
    later = decide(shop, user_id="c1", placements=["cart_drawer"])
    assert later["placements"]["cart_drawer"]["offers"] == []


def test_bad_requests_name_the_field(shop: Shop) -> None:
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
        response = shop.client.post("/v1/decisions", json=body, headers=shop.keys["storefront"])
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        errors = response.json()["errors"]
        assert any(e["field"] == field and words in e["message"] for e in errors), (body, errors)


def test_a_key_is_required_and_must_hold_storefront(shop: Shop) -> None:
    body = {"placements": ["homepage_hero"]}
    assert shop.client.post("/v1/decisions", json=body).status_code == 401
    unknown = shop.client.post(
        "/v1/decisions", json=body, headers={"Authorization": "Bearer pk_nope"}
    )
    assert unknown.status_code == 401
    wrong = shop.client.post("/v1/decisions", json=body, headers=shop.keys["ingest"])
    assert wrong.status_code == 403


def test_each_decision_is_logged_with_its_exposures_after_the_response(shop: Shop) -> None:
    log = shop.client.app.state.decision_log  # the app's, begun by its lifespan
    log.flush()
    body = decide(shop, anonymous_id="logged", placements=["homepage_hero", "cart_drawer"])
    with db.transaction() as session:
        assert session.get(Decision, body["decision_id"]) is None
    assert log.flush() == 1
    with db.transaction() as session:
        row = session.get(Decision, body["decision_id"])
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


def test_the_app_begins_its_decision_log_at_start_up_and_writes_it_at_shutdown(
    shop: Shop, monkeypatch
) -> None:
    monkeypatch.setattr(get_settings(), "decision_log_flush_s", 0.25)
    with TestClient(create_app()) as client:
        assert client.app.state.decision_log.flush_s == 0.25  # the settings of start-up
        response = client.post(
            "/v1/decisions", json={"placements": ["cart_drawer"]}, headers=shop.keys["storefront"]
        )
        assert response.status_code == 200, response.text
        decision_id = response.json()["decision_id"]
        with db.transaction() as session:
            assert session.get(Decision, decision_id) is None  # DECISION_LOG_BACKGROUND=false
    with db.transaction() as session:
        assert session.get(Decision, decision_id) is not None


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "fastapi-route"])
def test_the_fast_path_and_the_route_answer_alike(shop: Shop, fast: bool, monkeypatch) -> None:
    from service.settings import get_settings

    monkeypatch.setattr(get_settings(), "decision_fast_path", fast)
    request = {"placements": ["cart_drawer"], "context": {"cart": {"value": 20}}}
    with TestClient(create_app()) as client:
        headers = shop.keys["storefront"]
        ok = client.post("/v1/decisions?explain=true", json=request, headers=headers)
        assert ok.status_code == 200, ok.text
        placement = ok.json()["placements"]["cart_drawer"]
        assert placement["content"]["id"] == "free_shipping_nudge"
        assert placement["explain"][0]["matched"] is True
        assert "x-request-id" in ok.headers
        bad = client.post("/v1/decisions", content=b"{nope", headers=headers)
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"].startswith("body")
        missing = client.post("/v1/decisions", json=request)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
