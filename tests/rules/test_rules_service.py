"""Rules in the service, on PostgreSQL: evaluation off the events outbox, waiting rules,
the decision log, reload, rollback and the rules API."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service import flow
from service.auth.service import Scope
from service.rules import deployments, simulate
from service.ruleset.runtime import RUNTIME
from service.settings import get_settings
from tests.support import resolve_all
from tests.support.events import track
from tests.support.rules import NOW, at, evaluate, send

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST), "marketer": api_key(Scope.MARKETER)}


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory)
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    return directory


@pytest.fixture
def active(session: Session, rules_dir: Path) -> int:
    result = deployments.reload(session, directory=rules_dir, origin="cli")
    assert result.status == "active", result.errors
    assert result.deployment_id is not None
    return result.deployment_id


def consent(user: str, *, marketing: bool = True) -> dict:
    return {
        "type": "identify",
        "userId": user,
        "timestamp": at(-timedelta(days=2)),
        "traits": {"consent": {"marketing": marketing}, "first_name": "Ada"},
    }


def firings(session: Session, rule: str | None = None) -> list:
    return list(
        session.execute(
            text(
                "SELECT f.*, v.content_hash FROM rule_firings AS f "
                "JOIN ruleset_versions AS v ON v.id = f.version_id "
                "WHERE CAST(:rule AS text) IS NULL OR f.rule_id = :rule ORDER BY f.id"
            ),
            {"rule": rule},
        )
    )


def add_to_cart(user: str, *, cart: str = "c1", when: timedelta = -timedelta(hours=1)) -> dict:
    return track(
        "Product Added", user=user, cart_id=cart, product_id="p1", name="Mug", timestamp=at(when)
    )


def test_an_abandoned_cart_waits_then_fires_with_its_version_and_facts(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, consent("u1"), add_to_cart("u1"))
    assert evaluate(session) == 3  # and the Segment Entered event of high_intent_at_risk
    (firing,) = firings(session, "cart_abandoned")
    assert firing.status == "scheduled"
    assert firing.due_at == NOW - timedelta(hours=1) + timedelta(hours=24)
    assert firing.facts["profile.consent.marketing"] is True
    assert len(firing.content_hash) == 64
    # Not due yet: nothing happens.
    assert flow.run_due(session, now=NOW) == 0
    assert flow.run_due(session, now=firing.due_at) == 1
    (firing,) = firings(session, "cart_abandoned")
    assert firing.status == "fired"
    assert firing.decided_version_id == firing.version_id
    (offer,) = firing.actions
    assert offer == {
        "type": "offer",
        "channel": "email",
        "offer": "CART10",
        "placement": "cart_drawer",
        "template": "cart_reminder",
        "expires_in": "7d",
        "params": {"product_id": "p1", "product_name": "Mug", "cart_id": "c1"},
    }


@pytest.mark.parametrize("kept", [True, False], ids=["kept-guard", "row-without-cancel-on"])
def test_a_checkout_for_the_cart_cancels_the_wait_at_once(
    client: TestClient, session: Session, keys, active: int, kept: bool
) -> None:
    send(client, keys, consent("u2"), add_to_cart("u2"))
    evaluate(session)
    (waiting,) = firings(session, "cart_abandoned")
    assert waiting.guard == [
        {
            "events": ["Checkout Started", "Order Completed"],
            "same": {"cart_id": "c1"},
            "within": "24h",
        }
    ]
    assert waiting.cancel_on == ["Checkout Started", "Order Completed"]
    # A page view is not among them: the wait is not even re-checked.
    send(
        client, keys, track("Page Viewed", user="u2", path="/", timestamp=at(-timedelta(minutes=9)))
    )
    evaluate(session)
    assert firings(session, "cart_abandoned")[0].status == "scheduled"
    if not kept:  # a row from before `cancel_on` was kept: the active rule says
        session.execute(text("UPDATE rule_firings SET cancel_on = NULL, guard = NULL"))
    checkout = track(
        "Checkout Started", user="u2", cart_id="c1", timestamp=at(-timedelta(minutes=5))
    )
    send(client, keys, checkout)
    evaluate(session)
    (firing,) = firings(session, "cart_abandoned")
    assert firing.status == "cancelled"
    assert firing.reason.startswith("Checkout Started for the same cart_id at ")
    assert flow.run_due(session, now=NOW + timedelta(days=2)) == 0


def test_a_checkout_that_arrives_late_still_cancels_at_the_due_time(
    client: TestClient, session: Session, keys, active: int
) -> None:
    """Deliveries come out of order: the checkout happened first but is stored after
    the wait was scheduled, and after the cancelling re-check ran."""
    send(client, keys, consent("u3"), add_to_cart("u3"))
    evaluate(session)
    session.execute(text("UPDATE rule_firings SET due_at = :now"), {"now": NOW})
    send(
        client,
        keys,
        track(
            "Order Completed",
            user="u3",
            cart_id="c1",
            order_id="o1",
            timestamp=at(-timedelta(minutes=30)),
        ),
    )
    resolve_all()  # stored and resolved, not yet evaluated
    assert flow.run_due(session, now=NOW) == 1
    (firing,) = firings(session, "cart_abandoned")
    assert firing.status == "cancelled"
    assert "Order Completed" in firing.reason


def test_each_event_is_evaluated_once_in_effect(
    client: TestClient, session: Session, keys, active: int
) -> None:
    page = {
        "type": "page",
        "userId": "vip",
        "timestamp": at(-timedelta(minutes=1)),
        "properties": {"path": "/"},
        "messageId": "page-1",
    }
    send(client, keys, consent("vip"), page)
    resolve_all()
    session.execute(
        text(
            "UPDATE customers SET rfm_monetary = 5 WHERE id = "
            "(SELECT customer_id FROM events WHERE message_id = 'page-1')"
        )
    )
    assert evaluate(session) == 3  # and the Segment Entered event of high_value
    # The same delivery again has no second event, and evaluating the event a second
    # time (a worker that died before its commit was acknowledged) no second firing.
    client.post("/v1/events", json={"batch": [page]}, headers=keys["ingest"])
    session.execute(text("UPDATE events SET evaluated_at = NULL WHERE message_id = 'page-1'"))
    assert evaluate(session) == 1
    (firing,) = firings(session, "premium_homepage")
    assert firing.status == "fired"
    assert firing.actions[0]["params"] == {"first_name": "Ada"}


def test_old_events_and_events_of_unknown_names_trigger_nothing(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(
        client,
        keys,
        consent("u4"),
        add_to_cart("u4", when=-timedelta(days=3)),
        track("Wishlist Added", user="u4", timestamp=at(-timedelta(minutes=1))),
    )
    assert evaluate(session) == 3
    assert firings(session) == []


def test_a_bad_file_is_rejected_with_its_line_and_the_old_version_keeps_firing(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    (rules_dir / "broken.yaml").write_text(
        "ruleset: broken\nversion: 1\nrules:\n  - id: b\n    trigger: {event: Product Added}\n"
        "    when: [{profile.orders_count: {approx: 2}}]\n    actions: [{segment: {add: x}}]\n"
    )
    (rules_dir / "cart_abandonment.yaml").write_text("ruleset: [unclosed\n")
    response = client.post("/v1/rules/reload", headers=keys["marketer"])
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    errors = {(e["file"], e["line"]) for e in response.json()["rule_errors"]}
    assert errors == {("broken.yaml", 6), ("cart_abandonment.yaml", 2)}
    status = client.get("/v1/rules/status", headers=keys["marketer"]).json()
    assert status["healthy"] is False
    assert status["active"]["id"] == active
    assert status["last_attempt"]["status"] == "rejected"
    assert any(
        "unknown operator 'approx'" in e["message"] for e in status["last_attempt"]["errors"]
    )
    # The previous version still runs.
    send(client, keys, consent("u5"), add_to_cart("u5"))
    evaluate(session)
    (firing,) = firings(session, "cart_abandoned")
    assert firing.status == "scheduled"
    listed = client.get("/v1/rules", headers=keys["marketer"]).json()
    assert listed["deployment_id"] == active
    assert {r["name"] for r in listed["rulesets"]} >= {"cart_abandonment", "win_back"}


def test_an_edit_is_activated_and_rollback_restores_the_previous_behaviour(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    page = rules_dir / "high_value_homepage.yaml"
    page.write_text(
        page.read_text()
        .replace("version: 1", "version: 2", 1)
        .replace("gte: 500", "gte: 5000")
        .replace("gte: 5}", "gte: 6}")
    )
    reloaded = client.post("/v1/rules/reload", headers=keys["marketer"])
    assert reloaded.json()["status"] == "active"
    assert client.post("/v1/rules/reload", headers=keys["marketer"]).json()["status"] == "unchanged"

    def homepage(user: str) -> list:
        send(
            client,
            keys,
            consent(user),
            {
                "type": "page",
                "userId": user,
                "timestamp": at(-timedelta(seconds=5)),
                "properties": {"path": "/"},
            },
        )
        resolve_all()
        session.execute(text("UPDATE customers SET rfm_monetary = 5"))
        evaluate(session)
        return [f for f in firings(session, "premium_homepage") if f.status == "fired"]

    assert homepage("big1") == []  # version 2 asks for more
    versions = client.get("/v1/rules/versions/high_value_homepage", headers=keys["marketer"]).json()
    assert [v["version"] for v in versions] == [2, 1]
    rolled = client.post(
        "/v1/rules/rollback", json={"version_id": versions[1]["id"]}, headers=keys["marketer"]
    )
    assert rolled.status_code == 200, rolled.text
    (fired,) = homepage("big2")
    assert fired.version_id == versions[1]["id"]
    # A rollback holds across restarts until the files change.
    assert deployments.reload(session, directory=rules_dir, origin="startup").status == "unchanged"
    missing = client.post(
        "/v1/rules/rollback", json={"deployment_id": 10**9}, headers=keys["marketer"]
    )
    assert missing.status_code == 404


def test_the_decision_log_by_customer(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, consent("u6"), add_to_cart("u6"))
    evaluate(session)
    page = client.get(
        "/v1/rules/firings", params={"customer": "user_id:u6"}, headers=keys["marketer"]
    )
    assert page.status_code == 200, page.text
    (item,) = page.json()["items"]
    assert item["rule_id"] == "cart_abandoned"
    assert item["status"] == "scheduled"
    assert (
        client.get(
            "/v1/rules/firings", params={"customer": "user_id:nobody"}, headers=keys["marketer"]
        ).status_code
        == 404
    )
    assert client.get("/v1/rules/firings", headers=keys["ingest"]).status_code == 403


def test_a_rejected_reload_shows_in_the_metrics(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    def metric(name: str) -> float:
        body = client.get("/metrics").text
        (line,) = [x for x in body.splitlines() if x.startswith(name + " ")]
        return float(line.split()[1])

    before = metric("personalize_rules_reload_rejected_total")
    assert metric("personalize_rules_healthy") == 1
    (rules_dir / "x.yaml").write_text("ruleset: x\n")
    assert client.post("/v1/rules/reload", headers=keys["marketer"]).status_code == 422
    assert metric("personalize_rules_reload_rejected_total") == before + 1
    assert metric("personalize_rules_healthy") == 0


def test_reloading_unchanged_bad_files_is_still_rejected(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    (rules_dir / "x.yaml").write_text("ruleset: x\n")
    first = client.post("/v1/rules/reload", headers=keys["marketer"])
    again = client.post("/v1/rules/reload", headers=keys["marketer"])
    assert first.status_code == again.status_code == 422
    assert again.json()["rule_errors"] == first.json()["rule_errors"]
    assert again.json()["deployment_id"] == first.json()["deployment_id"]  # not recorded twice


def test_simulate_replays_stored_events_and_writes_nothing(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    from service.language.loader import load_directory

    order = track("Order Completed", user="sim1", order_id="o1", timestamp=at(-timedelta(hours=3)))
    send(client, keys, consent("sim1"), order, add_to_cart("sim1", when=-timedelta(hours=2)))
    resolve_all()
    welcome = rules_dir / "first_purchase.yaml"
    welcome.write_text(welcome.read_text().replace("    priority: 1\n", "    enabled: false\n", 1))
    candidate = [RUNTIME.engine.compile(r) for r in load_directory(rules_dir)]
    current = RUNTIME.active(session).rulesets
    window = {"since": NOW - timedelta(days=1), "until": NOW + timedelta(days=2)}
    new = simulate.replay(session, engine=RUNTIME.engine, rulesets=candidate, **window)
    old = simulate.replay(session, engine=RUNTIME.engine, rulesets=current, **window)
    assert new.events == old.events == 2  # the identify happened before `since`
    assert set(old.acted) == {"first_purchase_welcome", "cart_abandoned"}
    assert set(new.acted) == {"cart_abandoned"}
    assert firings(session) == []


EARLY = """
ruleset: early
version: 1
rules:
  - id: early_cart
    trigger:
      event: Product Added
    when:
      - absent: {events: [Order Completed], within: 24h, same: [cart_id]}
    actions:
      - segment: {add: early_cart}
    limits: {group: early, cooldown: 3d}
  - id: early_thanks
    trigger:
      event: Order Completed
    actions:
      - segment: {add: early_thanks}
    limits: {group: early, cooldown: 3d}
"""


def test_the_simulator_cancels_a_wait_early_as_the_service_does(
    client: TestClient, session: Session, keys, rules_dir: Path
) -> None:
    """A cart's reminder waits in the limits group; the order for that cart cancels it
    at once, so the thank-you of the same group is not held back by it: in the service
    and in the simulator alike (which, deciding waits only at their due time, held it)."""
    for path in rules_dir.glob("*.yaml"):
        path.unlink()
    shutil.rmtree(rules_dir / "segments")
    (rules_dir / "early.yaml").write_text(EARLY)
    assert deployments.reload(session, directory=rules_dir, origin="cli").status == "active"
    send(client, keys, add_to_cart("early1", when=-timedelta(hours=3)))
    evaluate(session)  # the reminder waits
    ordered = at(-timedelta(hours=2))
    send(client, keys, track("Order Completed", user="early1", cart_id="c1", timestamp=ordered))
    evaluate(session)  # the order cancels it at once: the thank-you is not held back
    assert flow.run_due(session, now=NOW + timedelta(days=2)) == 0
    statuses = {f.rule_id: f.status for f in firings(session)}
    assert statuses == {"early_cart": "cancelled", "early_thanks": "fired"}
    window = {"since": NOW - timedelta(days=1), "until": NOW + timedelta(days=2)}
    rulesets = RUNTIME.active(session).rulesets
    simulated = simulate.replay(session, engine=RUNTIME.engine, rulesets=rulesets, **window)
    assert set(simulated.acted) == {"early_thanks"}
