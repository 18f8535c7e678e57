"""Segments in the service, on PostgreSQL: membership recomputed on each event, by the
scheduled refresh and by backfills; history; the events rules trigger on; the API."""

from __future__ import annotations

import random
import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from service.events import history as event_history
from service.events import outbox
from service.language.facts import stored_filter
from service.language.segments import counts_from, window_bounds
from service.profiles import repository as profile_repository
from service.rules import deployments
from service.ruleset.runtime import RUNTIME
from service.segments import repository, service
from service.settings import get_settings
from tests.support import resolve_all
from tests.support.events import track
from tests.support.rules import NOW, at, evaluate, send

SHIPPED = Path(__file__).resolve().parents[2] / "rules"

ON_ENTRY = """
ruleset: on_entry
version: 1
rules:
  - id: save_the_cart
    trigger:
      event: Segment Entered
      where:
        - event.properties.segment: high_intent_at_risk
    actions:
      - offer: {channel: inbox, offer: SAVE5, placement: cart_drawer, expires_in: 1d}
"""


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST), "marketer": api_key(Scope.MARKETER)}


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory)
    (directory / "on_entry.yaml").write_text(ON_ENTRY)
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    return directory


@pytest.fixture
def active(session: Session, rules_dir: Path) -> int:
    result = deployments.reload(session, directory=rules_dir, origin="cli")
    assert result.status == "active", result.errors
    assert result.deployment_id is not None
    # The first activation backfills every segment; with no customers yet it is empty.
    finish_runs(session, now=NOW)
    return result.deployment_id


def finish_runs(session: Session, *, now: datetime, batch: int = 1000) -> int:
    """Advance every running refresh or backfill to its end; returns the batches."""
    batches = 0
    while service.advance(
        session,
        engine=RUNTIME.engine,
        definitions=RUNTIME.active,
        now=now,
        batch=batch,
    ):
        batches += 1
    return batches


def customer_of(session: Session, user: str) -> uuid.UUID:
    customer = session.scalar(
        text("SELECT customer_id FROM identities WHERE kind = 'user_id' AND value = :u"),
        {"u": user},
    )
    assert customer is not None
    return customer


def periods(session: Session, customer: uuid.UUID, segment: str | None = None) -> list:
    return list(
        session.execute(
            text(
                "SELECT * FROM segment_memberships WHERE customer_id = :c "
                "AND (CAST(:s AS text) IS NULL OR segment = :s) ORDER BY id"
            ),
            {"c": customer, "s": segment},
        )
    )


def segment_events(session: Session, customer: uuid.UUID) -> list[tuple[str, str, str]]:
    rows = session.execute(
        text(
            "SELECT name, properties FROM events WHERE customer_id = :c AND source = 'segments' "
            "ORDER BY id"
        ),
        {"c": customer},
    )
    return [(r.name, r.properties["segment"], r.properties["reason"]) for r in rows]


def add_to_cart(user: str, *, when: timedelta = -timedelta(hours=1)) -> dict:
    return track("Product Added", user=user, cart_id="c1", product_id="p1", timestamp=at(when))


def order(user: str, order_id: str, total: str, *, when: timedelta = -timedelta(hours=2)) -> dict:
    return track(
        "Order Completed",
        user=user,
        order_id=order_id,
        total=total,
        currency="USD",
        timestamp=at(when),
    )


def test_an_event_moves_a_customer_into_a_segment_and_a_rule_fires_on_entry(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, add_to_cart("s1"))
    evaluate(session)
    customer = customer_of(session, "s1")
    (period,) = periods(session, customer, "high_intent_at_risk")
    assert period.exited_at is None
    assert (period.added_by, period.version) == ("definition", 1)
    assert period.entered_at == NOW
    version = RUNTIME.active(session).version_ids["segment:high_intent_at_risk"]
    assert period.version_id == version
    assert segment_events(session, customer) == [
        ("Segment Entered", "high_intent_at_risk", "event")
    ]
    # The rule on entry fired, on the Segment Entered event, once.
    (firing,) = session.execute(
        text("SELECT * FROM rule_firings WHERE rule_id = 'save_the_cart'")
    ).all()
    assert (firing.status, firing.customer_id) == ("fired", customer)
    (offer,) = firing.actions
    assert offer["offer"] == "SAVE5"
    # Another event that keeps them in changes nothing and announces nothing.
    send(client, keys, add_to_cart("s1", when=-timedelta(minutes=30)))
    evaluate(session)
    assert len(periods(session, customer, "high_intent_at_risk")) == 1
    assert len(segment_events(session, customer)) == 1


def test_a_checkout_moves_them_out_and_the_period_is_kept(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, add_to_cart("s2", when=-timedelta(hours=3)))
    evaluate(session)
    send(
        client,
        keys,
        track("Checkout Started", user="s2", cart_id="c1", timestamp=at(-timedelta(hours=1))),
    )
    evaluate(session)
    customer = customer_of(session, "s2")
    (period,) = periods(session, customer, "high_intent_at_risk")
    assert (period.exited_at, period.exited_by) == (NOW, "no longer matches")
    assert segment_events(session, customer) == [
        ("Segment Entered", "high_intent_at_risk", "event"),
        ("Segment Left", "high_intent_at_risk", "event"),
    ]


def test_the_refresh_moves_a_customer_out_when_the_window_passes_without_an_event(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, add_to_cart("s3", when=-timedelta(hours=1)))
    evaluate(session)
    customer = customer_of(session, "s3")
    # Later the same day: still within 24 h of the cart, so a refresh keeps them in.
    assert service.start_refresh(session, segments=["high_intent_at_risk"]) is not None
    finish_runs(session, now=NOW + timedelta(hours=22))
    assert periods(session, customer, "high_intent_at_risk")[0].exited_at is None
    # Past the window, with no event at all: the next refresh moves them out.
    later = NOW + timedelta(hours=23, minutes=1)
    run = service.start_refresh(session, segments=["high_intent_at_risk"])
    assert run is not None
    finish_runs(session, now=later)
    (period,) = periods(session, customer, "high_intent_at_risk")
    assert (period.exited_at, period.exited_by) == (later, "no longer matches")
    assert segment_events(session, customer)[-1] == (
        "Segment Left",
        "high_intent_at_risk",
        "refresh",
    )
    assert (run.status, run.done, run.exited) == ("done", run.total, 1)


def test_a_refresh_is_not_started_twice(session: Session, active: int) -> None:
    first = service.start_refresh(session, segments=["high_value"])
    assert first is not None
    assert service.start_refresh(session, segments=["high_value"]) is None
    finish_runs(session, now=NOW)
    assert service.start_refresh(session, segments=["high_value"]) is not None


def test_a_changed_definition_backfills_every_customer_with_progress(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    send(client, keys, order("b1", "o-b1", "300.00"), order("b2", "o-b2", "700.00"))
    send(
        client,
        keys,
        track("Product Viewed", user="b3", product_id="p1", timestamp=at(-timedelta(hours=1))),
    )
    evaluate(session)
    small, big = customer_of(session, "b1"), customer_of(session, "b2")
    assert periods(session, small, "high_value") == []
    (kept,) = periods(session, big, "high_value")
    # The marketer lowers the threshold: version 2.
    path = rules_dir / "segments" / "high_value.yaml"
    path.write_text(
        path.read_text().replace("version: 1", "version: 2").replace("{gte: 500}", "{gte: 250}")
    )
    result = deployments.reload(session, directory=rules_dir, origin="cli")
    assert result.status == "active"
    (run,) = repository.running(session)
    assert (run.kind, run.segments, run.done) == ("backfill", ["high_value"], 0)
    assert run.total == profile_repository.count_customers(session) >= 3
    seen = []
    while service.advance(
        session,
        engine=RUNTIME.engine,
        definitions=RUNTIME.active,
        now=NOW,
        batch=1,
    ):
        seen.append(run.done)
    # One customer per committed batch (and an empty one that finds the end).
    assert seen == [*range(1, run.total + 1), run.total]
    assert (run.status, run.entered, run.exited) == ("done", 1, 0)
    (period,) = periods(session, small, "high_value")
    assert (period.version, period.exited_at) == (2, None)
    # Who was already in stays in, under the version that put them there.
    assert periods(session, big, "high_value") == [kept]
    assert ("Segment Entered", "high_value", "backfill") in segment_events(session, small)
    response = client.get(f"/v1/segment-runs/{run.id}", headers=keys["marketer"])
    assert response.status_code == 200
    assert response.json()["progress"] == 1.0
    assert response.json()["status"] == "done"


def test_a_removed_definition_takes_its_members_out(
    client: TestClient, session: Session, keys, active: int, rules_dir: Path
) -> None:
    send(client, keys, add_to_cart("r1"))
    evaluate(session)
    customer = customer_of(session, "r1")
    assert periods(session, customer, "high_intent_at_risk")[0].exited_at is None
    (rules_dir / "segments" / "high_intent_at_risk.yaml").unlink()
    (rules_dir / "on_entry.yaml").unlink()
    assert deployments.reload(session, directory=rules_dir, origin="cli").status == "active"
    finish_runs(session, now=NOW)
    (period,) = periods(session, customer, "high_intent_at_risk")
    assert period.exited_by == "definition removed"


def test_an_invalid_definition_is_rejected_with_file_and_line_and_the_previous_stays(
    session: Session, active: int, rules_dir: Path
) -> None:
    path = rules_dir / "segments" / "high_value.yaml"
    path.write_text(path.read_text().replace("{gte: 500}", "{above: 500}"))
    result = deployments.reload(session, directory=rules_dir, origin="cli")
    assert result.status == "rejected"
    (error,) = result.errors
    assert error["file"] == "segments/high_value.yaml"
    assert error["line"] == 10  # `- profile.total_spent: {above: 500}`
    assert "unknown operator 'above'" in error["message"]
    assert RUNTIME.active(session).deployment_id == active
    segments = RUNTIME.active(session).segments
    assert segments is not None
    assert "high_value" in segments.segments
    assert repository.running(session) == []  # nothing to backfill


def test_merged_profiles_keep_rule_made_segments_and_recompute_the_rest(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, add_to_cart("m1"))
    evaluate(session)
    anonymous = customer_of(session, "m1")
    service.add(session, customer=anonymous, segment="vip_list", by="api", now=NOW)
    # The same person identified with another user id and an email the first profile
    # also has: the profiles merge.
    from service.profiles.repository import merge

    other = uuid.uuid4()
    session.execute(text("INSERT INTO customers (id) VALUES (:c)"), {"c": other})
    merge(session, winner=other, loser=anonymous, reason="test", source="test", message_id="m")
    assert [p.exited_by for p in periods(session, anonymous)] == ["merged"]
    (moved,) = periods(session, other, "vip_list")
    assert moved.exited_at is None


def test_window_counts_in_sql_match_the_files_own_tests(session: Session, active: int) -> None:
    """The service counts windows in one grouped query; a segment file's tests count a
    list. Both must agree on every window of the shipped segments."""
    compiled = RUNTIME.active(session).segments
    assert compiled is not None
    assert compiled.windows
    rng = random.Random(7)
    names = ["Product Added", "Product Viewed", "Checkout Started", "Order Completed"]
    customers = [uuid.uuid4() for _ in range(20)]
    history: dict[uuid.UUID, list[tuple[str, str | None, datetime]]] = {}
    for customer in customers:
        session.execute(text("INSERT INTO customers (id) VALUES (:c)"), {"c": customer})
        for i in range(rng.randrange(0, 25)):
            name = rng.choice(names)
            occurred = NOW - timedelta(minutes=rng.randrange(0, 60 * 24 * 9))
            session.execute(
                text(
                    "INSERT INTO events (source, message_id, customer_id, type, name, "
                    "occurred_at, properties, context) VALUES ('test', :m, :c, 'track', :n, :t, "
                    "'{}', '{}')"
                ),
                {"m": f"{customer}-{i}", "c": customer, "n": name, "t": occurred},
            )
            history.setdefault(customer, []).append((*stored_filter(name), occurred))
    bounds = window_bounds(compiled.windows, now=NOW)
    counted = event_history.window_counts(session, customers, bounds)
    for customer in customers:
        expected = counts_from(compiled.windows, history.get(customer, []), now=NOW)
        got = {k: counted.get(customer, {}).get(k, 0) for k in expected}
        assert got == expected


def test_the_api_lists_segments_members_a_customers_segments_and_size_history(
    client: TestClient, session: Session, keys, active: int
) -> None:
    send(client, keys, add_to_cart("a1"), add_to_cart("a2"), order("a3", "o-a3", "900.00"))
    evaluate(session)
    a1, a2 = customer_of(session, "a1"), customer_of(session, "a2")
    listed = client.get("/v1/segments", headers=keys["marketer"])
    assert listed.status_code == 200, listed.text
    by_id = {s["id"]: s for s in listed.json()["items"]}
    assert by_id["high_intent_at_risk"]["size"] == 2
    assert by_id["high_intent_at_risk"]["computed"] is True
    assert by_id["high_intent_at_risk"]["file"] == "segments/high_intent_at_risk.yaml"
    assert by_id["high_value"]["size"] == 1
    assert by_id["lapsed_90d"]["size"] == 0
    first = client.get(
        "/v1/segments/high_intent_at_risk/members", params={"limit": 1}, headers=keys["marketer"]
    ).json()
    second = client.get(
        "/v1/segments/high_intent_at_risk/members",
        params={"limit": 1, "after": first["next_after"]},
        headers=keys["marketer"],
    ).json()
    members = [first["items"][0]["customer_id"], second["items"][0]["customer_id"]]
    assert members == sorted([str(a1), str(a2)])
    mine = client.get(f"/v1/profiles/{a1}/segments", headers=keys["marketer"]).json()
    assert mine["segments"] == ["high_intent_at_risk"]
    assert mine["periods"][0]["added_by"] == "definition"
    # History: a member for three days who left yesterday, one who joined today.
    session.execute(
        text(
            "INSERT INTO segment_memberships (customer_id, segment, added_by, entered_at, "
            "exited_at, exited_by) VALUES (:a, 'lapsed_90d', 'test', now() - interval '3 days' "
            "- interval '1 hour', now() - interval '1 day' - interval '1 hour', 'test'), "
            "(:b, 'lapsed_90d', 'test', now() - interval '1 hour', NULL, NULL)"
        ),
        {"a": a1, "b": a2},
    )
    history = client.get(
        "/v1/segments/lapsed_90d/history", params={"points": 5}, headers=keys["marketer"]
    ).json()
    sizes = [(p["size"], p["entered"], p["exited"]) for p in history["points"]]
    assert sizes == [(0, 0, 0), (1, 1, 0), (1, 0, 0), (0, 0, 1), (1, 1, 0)]
    missing = client.get("/v1/segments/no_such_segment", headers=keys["marketer"])
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    bad = client.get("/v1/segments/Not-A-Name/members", headers=keys["marketer"])
    assert bad.status_code == 422
    assert client.get("/v1/segments", headers=keys["ingest"]).status_code == 403


def announcements(client: TestClient, session: Session, keys, user: str, *, count: int) -> None:
    """A customer whose own events are all evaluated, with `count` Segment Entered events
    waiting (as a backfill leaves them)."""
    send(client, keys, order(user, f"o-{user}", "900.00"))
    resolve_all()
    customer = customer_of(session, user)
    session.execute(
        text("UPDATE events SET evaluated_at = now() WHERE customer_id = :c"), {"c": customer}
    )
    for i in range(count):
        service.add(session, customer=customer, segment=f"list_{i}", by="rule:test", now=NOW)


def test_rules_take_customers_own_events_before_segment_announcements(
    client: TestClient, session: Session, keys, active: int
) -> None:
    announcements(client, session, keys, "p1", count=5)  # older than the next page view
    send(
        client,
        keys,
        track("Product Viewed", user="p1", product_id="p9", timestamp=at(-timedelta(seconds=5))),
    )
    resolve_all()
    (first,) = outbox.claim_unevaluated(session, limit=1)
    assert (first.source, first.name) == ("api", "Product Viewed")
    outbox.mark_evaluated(session, [first.id], at=NOW)
    rest = outbox.claim_unevaluated(session, limit=10)
    assert [e.name for e in rest] == ["Segment Entered"] * 5


def test_steady_traffic_leaves_announcements_a_fifth_of_each_batch(
    client: TestClient, session: Session, keys, active: int
) -> None:
    announcements(client, session, keys, "q1", count=3)
    views = [
        track("Product Viewed", user="q1", product_id=f"p{i}", timestamp=at(-timedelta(seconds=i)))
        for i in range(12)
    ]
    send(client, keys, *views)
    resolve_all()
    batch = outbox.claim_unevaluated(session, limit=10)
    names = sorted(e.name for e in batch)
    assert names == ["Product Viewed"] * 8 + ["Segment Entered"] * 2


def test_a_batch_with_an_older_clock_still_counts_the_newest_event(
    client: TestClient, session: Session, keys, active: int
) -> None:
    """A refresh batch that took its time before waiting for a customer's lock must not
    undo what the evaluation holding the lock just did."""
    send(client, keys, add_to_cart("o1", when=timedelta(0)))
    evaluate(session)
    customer = customer_of(session, "o1")
    assert service.start_refresh(session, segments=["high_intent_at_risk"]) is not None
    finish_runs(session, now=NOW - timedelta(seconds=30))  # a clock 30 s behind the event
    (period,) = periods(session, customer, "high_intent_at_risk")
    assert period.exited_at is None


def test_a_profile_merged_away_enters_no_segment(
    client: TestClient, session: Session, keys, active: int
) -> None:
    from service.profiles.repository import merge

    send(client, keys, order("mm1", "o-mm1", "900.00"))
    evaluate(session)
    loser = customer_of(session, "mm1")
    winner = uuid.uuid4()
    session.execute(text("INSERT INTO customers (id) VALUES (:c)"), {"c": winner})
    merge(session, winner=winner, loser=loser, reason="test", source="test", message_id="mm")
    assert all(p.exited_by == "merged" for p in periods(session, loser))
    # Its own row still says top spender: recomputing it must not put it back anywhere.
    session.execute(text("UPDATE customers SET rfm_monetary = 5 WHERE id = :c"), {"c": loser})
    compiled = RUNTIME.active(session)
    assert compiled.segments is not None
    changed = service.update(
        session,
        engine=RUNTIME.engine,
        compiled=compiled.segments,
        version_ids=compiled.version_ids,
        customers=[loser],
        now=NOW,
        reason="test",
    )
    assert changed.entered == 0
    assert all(p.exited_at is not None for p in periods(session, loser))
