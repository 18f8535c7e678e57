"""No single event, customer, waiting rule or action stops the others: the one whose
processing raises is set aside with its error (listed, counted, replayable) and the
rest of its batch commits in the same sweep.

The poisons are data, not injected faults: an event dated 9999-12-31 (the rules'
windows overflow: such events were accepted before intake bounded times), and a
customer whose `last_seen_at` is PostgreSQL's 'infinity' (which no Python datetime
holds: reading the profile raises), as a bug or a hand-made fix could write.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service import flow
from service.actions import tasks as action_tasks
from service.auth.service import Scope
from service.rules import deployments
from service.ruleset.runtime import RUNTIME
from service.segments import service as segments
from service.settings import get_settings
from tests.support import resolve_all

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime.now(UTC).replace(microsecond=0)
POISON = "UPDATE customers SET last_seen_at = 'infinity' WHERE id = :id"
CURED = "UPDATE customers SET last_seen_at = now() WHERE id = :id"

LOYALTY = """\
ruleset: loyalty
version: 1
events: [Points Earned]
traits: [points]
rules:
  - id: points_reminder
    trigger: {event: Points Earned}
    when:
      - profile.traits.points: {gt: 10}
    delay: 1h
    actions:
      - content: {placement: home_hero, content: points_banner}
"""
POINTS_SEGMENT = """\
segment: points_holders
version: 1
traits: [points]
when:
  - profile.traits.points: {gt: 10}
"""


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory)
    (directory / "loyalty.yaml").write_text(LOYALTY)
    (directory / "segments" / "points_holders.yaml").write_text(POINTS_SEGMENT)
    settings = get_settings()
    monkeypatch.setattr(settings, "rules_dir", directory)
    monkeypatch.setattr(settings, "consent_defaults", {"marketing": True})
    return directory


@pytest.fixture
def active(session: Session, rules_dir: Path) -> None:
    assert deployments.reload(session, directory=rules_dir, origin="cli").status == "active"


@pytest.fixture
def admin(api_key) -> dict[str, str]:
    return api_key(Scope.ADMIN)


@pytest.fixture
def ingest(api_key) -> dict[str, str]:
    return api_key(Scope.INGEST)


def stamp(delta: timedelta = timedelta(0)) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


def send(client: TestClient, ingest: dict[str, str], events: list[dict]) -> None:
    response = client.post("/v1/events", json={"batch": events}, headers=ingest)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events), response.json()


def added_to_cart(user: str) -> dict:
    return {
        "type": "track",
        "event": "Product Added",
        "userId": user,
        "timestamp": stamp(-timedelta(minutes=1)),
        "properties": {"cart_id": f"cart-{user}", "product_id": "p1"},
    }


def scalar(session: Session, sql: str, **params: object) -> object:
    return session.execute(text(sql), params).scalar_one()


def poison_copy_of(session: Session, event_id: int, **values: object) -> int:
    """A resolved, unevaluated copy of an event with some columns changed: data that got
    in before today's checks, or that a bug wrote."""
    columns = "source, customer_id, identity_keys, type, name, occurred_at, properties, context"
    changed = ", ".join(
        f"CAST(:{k} AS {'timestamptz' if k == 'occurred_at' else 'text'})" for k in values
    )
    kept = ", ".join(c for c in columns.split(", ") if c not in values)
    new_id = session.execute(
        text(
            f"INSERT INTO events (message_id, {kept}, {', '.join(values)}) "
            f"SELECT message_id || '-poison', {kept}, {changed} FROM events WHERE id = :id "
            "RETURNING id"
        ),
        {"id": event_id, **values},
    ).scalar_one()
    return int(new_id)


def test_a_poison_event_is_set_aside_and_the_other_499_evaluate_in_one_sweep(
    client: TestClient, session: Session, ingest, admin, active
) -> None:
    send(client, ingest, [added_to_cart(f"u{i}") for i in range(499)])
    resolve_all()
    first = int(scalar(session, "SELECT min(id) FROM events"))
    poison = poison_copy_of(session, first, occurred_at="9999-12-31T00:00:00Z")

    assert flow.evaluate_pending(session, limit=500, now=NOW) == 500

    # (The segment announcements these events brought about wait for the next sweep.)
    own = "source <> 'segments'"
    assert scalar(session, f"SELECT count(*) FROM events WHERE {own} AND evaluated_at IS NULL") == 0
    scheduled = scalar(
        session,
        "SELECT count(*) FROM rule_firings WHERE rule_id = 'cart_abandoned' "
        "AND status = 'scheduled'",
    )
    assert scheduled == 499
    listed = client.get("/v1/set-aside", headers=admin).json()["items"]
    assert [(i["stage"], i["item_id"], i["error_type"]) for i in listed] == [
        ("evaluate", poison, "OverflowError")
    ]
    metrics = client.get("/metrics").text
    assert 'personalize_set_aside_open{stage="evaluate"} 1.0' in metrics


def test_a_set_aside_event_is_evaluated_again_when_replayed_after_a_fix(
    client: TestClient, session: Session, ingest, admin, active
) -> None:
    send(client, ingest, [added_to_cart("r1")])
    resolve_all()
    first = int(scalar(session, "SELECT min(id) FROM events"))
    poison = poison_copy_of(session, first, occurred_at="9999-12-31T00:00:00Z")
    flow.evaluate_pending(session, now=NOW)
    (item,) = client.get("/v1/set-aside", headers=admin).json()["items"]

    # The fix: the event's time corrected (a repaired mapping, say).
    session.execute(
        text(
            "UPDATE events SET occurred_at = :at, properties = properties || "
            '\'{"cart_id": "cart-r1-b"}\' WHERE id = :id'
        ),
        {"at": NOW, "id": poison},
    )
    replayed = client.post(f"/v1/set-aside/{item['id']}/replay", headers=admin)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replayed_at"] is not None
    assert client.get("/v1/set-aside", headers=admin).json()["items"] == []
    again = client.post(f"/v1/set-aside/{item['id']}/replay", headers=admin)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")

    assert flow.evaluate_pending(session, now=NOW) >= 1
    firing = scalar(session, "SELECT status FROM rule_firings WHERE event_id = :id", id=poison)
    assert firing == "suppressed"  # evaluated: the first cart holds the group's cooldown
    assert client.post("/v1/set-aside/999999/replay", headers=admin).status_code == 404


def test_a_customer_whose_segments_raise_is_set_aside_and_the_others_are_recomputed(
    client: TestClient, session: Session, ingest, admin, active
) -> None:
    users = ["s1", "s2", "s3"]
    send(
        client,
        ingest,
        [
            {"type": "identify", "userId": u, "traits": {"points": 50}, "timestamp": stamp()}
            for u in users
        ],
    )
    resolve_all()
    poisoned = scalar(session, "SELECT customer_id FROM events ORDER BY id LIMIT 1")
    session.execute(text(POISON), {"id": poisoned})
    flow.evaluate_pending(session, now=NOW)

    members = scalar(
        session,
        "SELECT count(*) FROM segment_memberships WHERE segment = 'points_holders' "
        "AND exited_at IS NULL",
    )
    assert members == 2
    listed = client.get("/v1/set-aside", headers=admin).json()["items"]
    # Its segments, and its own event (the rules read the same profile).
    assert [(i["stage"], i["error_type"], i["customer_id"]) for i in listed] == [
        ("segments", "DataError", str(poisoned)),
        ("evaluate", "DataError", str(poisoned)),
    ]
    item = listed[0]
    assert item["item_id"] is None

    # Segment runs (the backfill the new segment started, and a refresh) walk past the
    # customer, setting it aside once each, and finish.
    run = client.post("/v1/segment-runs", headers=admin)
    assert run.status_code in (200, 201, 202), run.text
    while segments.advance(
        session,
        engine=RUNTIME.engine,
        definitions=RUNTIME.active,
        batch=2,
        now=NOW,
    ):
        pass
    runs = client.get("/v1/segment-runs", headers=admin).json()
    assert sorted(r["status"] for r in runs) == ["done", "done"], runs
    listed = client.get("/v1/set-aside?stage=segments", headers=admin).json()["items"]
    assert [i["customer_id"] for i in listed] == [str(poisoned)] * 3

    # Not fixed yet: the replay says so and the row stays open.
    early = client.post(f"/v1/set-aside/{item['id']}/replay", headers=admin)
    assert early.status_code == 409, early.text
    assert "still fails (DataError)" in early.json()["detail"]
    open_ids = [i["id"] for i in client.get("/v1/set-aside", headers=admin).json()["items"]]
    assert item["id"] in open_ids

    # Fixed, the customer's segments are recomputed by the replay itself.
    session.execute(text(CURED), {"id": poisoned})
    replayed = client.post(f"/v1/set-aside/{item['id']}/replay", headers=admin)
    assert replayed.status_code == 200, replayed.text
    members = scalar(
        session,
        "SELECT count(*) FROM segment_memberships WHERE segment = 'points_holders' "
        "AND exited_at IS NULL",
    )
    assert members == 3


def test_a_waiting_rule_whose_recheck_raises_is_set_aside_and_the_others_fire(
    client: TestClient, session: Session, ingest, admin, active
) -> None:
    users = ["t1", "t2", "t3"]
    send(
        client,
        ingest,
        [
            {"type": "identify", "userId": u, "traits": {"points": 50}, "timestamp": stamp()}
            for u in users
        ]
        + [
            {"type": "track", "event": "Points Earned", "userId": u, "timestamp": stamp()}
            for u in users
        ],
    )
    resolve_all()
    flow.evaluate_pending(session, now=NOW)
    waiting = session.execute(
        text(
            "SELECT id, customer_id FROM rule_firings WHERE rule_id = 'points_reminder' ORDER BY id"
        )
    ).all()
    assert len(waiting) == 3
    poisoned: uuid.UUID = waiting[1].customer_id
    session.execute(text(POISON), {"id": poisoned})

    assert flow.run_due(session, now=NOW + timedelta(hours=2)) == 3

    statuses = dict(
        session.execute(
            text("SELECT id, status FROM rule_firings WHERE rule_id = 'points_reminder'")
        ).all()
    )
    assert statuses == {waiting[0].id: "fired", waiting[1].id: "set_aside", waiting[2].id: "fired"}
    (item,) = client.get("/v1/set-aside?stage=timers", headers=admin).json()["items"]
    assert item["item_id"] == waiting[1].id

    session.execute(text(CURED), {"id": poisoned})
    assert client.post(f"/v1/set-aside/{item['id']}/replay", headers=admin).status_code == 200
    assert flow.run_due(session, now=NOW + timedelta(hours=2)) == 1
    assert (
        scalar(session, "SELECT status FROM rule_firings WHERE id = :id", id=waiting[1].id)
        == "fired"
    )


def test_an_action_whose_claim_raises_is_dead_with_the_error_and_others_are_sent(
    client: TestClient, session: Session, ingest, admin, active
) -> None:
    users = ["a1", "a2"]
    send(
        client,
        ingest,
        [
            {
                "type": "identify",
                "userId": u,
                "traits": {"points": 50},
                "timestamp": stamp(-timedelta(hours=2)),
            }
            for u in users
        ]
        + [
            {
                "type": "track",
                "event": "Points Earned",
                "userId": u,
                "timestamp": stamp(-timedelta(hours=2)),
            }
            for u in users
        ],
    )
    resolve_all()
    flow.evaluate_pending(session, now=NOW)  # past their delay: they act at once
    actions = session.execute(text("SELECT id FROM actions ORDER BY id")).scalars().all()
    assert len(actions) == 2
    # A payload no code path expects (a bug elsewhere wrote it).
    session.execute(
        text('UPDATE actions SET payload = payload || \'{"expires_at": "soon"}\' WHERE id = :id'),
        {"id": actions[0]},
    )

    assert action_tasks.dispatch(actions[0]) == "dead"
    assert action_tasks.dispatch(actions[1]) is None  # content: stored in the inbox at once

    rows = dict(session.execute(text("SELECT id, status FROM actions")).all())
    assert rows == {actions[0]: "dead", actions[1]: "sent"}
    dead = client.get("/v1/actions?status=dead", headers=admin).json()
    (item,) = dead["items"]
    assert item["last_error"].startswith("could not be processed (ValueError")
