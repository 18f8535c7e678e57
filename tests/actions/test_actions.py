"""Actions on PostgreSQL with real receivers: a signed webhook to an HTTP server, email
to an SMTP server, the offers inbox and segments; retries, dead actions, leases,
consent, quiet hours, frequency caps and the actions API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.actions import channels, claims, tasks
from service.actions import service as actions
from service.actions.models import Action, ActionAttempt, InboxItem
from service.auth.service import Scope
from service.language import templates
from service.language.loader import load_directory
from service.rules import deployments
from service.segments.models import SegmentMembership
from service.settings import Destination, get_settings
from tests.support import resolve_all
from tests.support.events import track
from tests.support.rules import evaluate, send
from tests.support.sinks import HttpSink, http_sink, smtp_server

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime.now(UTC).replace(microsecond=0)

RULES = """
ruleset: test_actions
version: 1
rules:
  - id: notify_crm
    trigger:
      event: Product Viewed
      where: [{event.properties.product_id: crm}]
    actions:
      - webhook: {destination: sink, params: {product: "{{ event.properties.product_id }}"}}
  - id: mail_offer
    trigger:
      event: Product Viewed
      where: [{event.properties.product_id: mail}]
    actions:
      - offer:
          channel: email
          offer: SAVE5
          template: test_offer
          expires_in: 2d
          params: {product_name: "{{ event.properties.name }}"}
  - id: keep_offer
    trigger:
      event: Product Viewed
      where: [{event.properties.product_id: keep}]
    actions:
      - offer: {channel: inbox, offer: KEEP, expires_in: 1h}
      - segment: {add: vip}
"""

TEMPLATE = """
subject: "{{ params.product_name }} for {{ profile.traits.first_name | default('you') }}"
text: |
  Code {{ offer.offer }}.
"""


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST), "marketer": api_key(Scope.MARKETER)}


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with http_sink() as s:
        yield s


@pytest.fixture
def mailbox() -> Iterator[list]:
    with smtp_server() as (port, messages):
        settings = get_settings()
        old = settings.smtp_port
        settings.smtp_port = port
        yield messages
        settings.smtp_port = old


@pytest.fixture
def setup(
    session: Session, tmp_path: Path, sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> Path:
    directory = tmp_path / "rules"
    (directory / "templates").mkdir(parents=True)
    (directory / "test_actions.yaml").write_text(RULES)
    (directory / "templates" / "test_offer.yaml").write_text(TEMPLATE)
    settings = get_settings()
    monkeypatch.setattr(settings, "rules_dir", directory)
    monkeypatch.setattr(settings, "quiet_hours", "")
    monkeypatch.setattr(settings, "action_lease_s", 30.0)
    monkeypatch.setattr(
        settings,
        "action_destinations",
        {"sink": Destination(url=sink.url, secret=sink.secret, timeout_s=2)},
    )
    result = deployments.reload(session, directory=directory, origin="cli")
    assert result.status == "active", result.errors
    return directory


def customer(user: str, *, marketing: bool = True, **traits: object) -> dict:
    return {
        "type": "identify",
        "userId": user,
        "timestamp": (NOW - timedelta(days=1)).isoformat(),
        "traits": {
            "email": f"{user}@shop.example",
            "first_name": "Ada",
            "consent": {"marketing": marketing},
            **traits,
        },
    }


def view(user: str, product: str, *, name: str = "Mug", minutes: int = 5) -> dict:
    return track(
        "Product Viewed",
        user=user,
        product_id=product,
        name=name,
        timestamp=(NOW - timedelta(minutes=minutes)).isoformat(),
    )


def fire(client: TestClient, session: Session, keys, *events: dict) -> list[Action]:
    send(client, keys, *events)
    evaluate(session, now=NOW)
    return list(session.scalars(select(Action).order_by(Action.id)))


def run(session: Session, action: Action, *, now: datetime = NOW) -> str | None:
    """What a worker's dispatch task does, on the test's transaction."""
    delivery = claims.claim(session, action_id=action.id, now=now)
    session.flush()  # the task commits here
    session.refresh(action)
    if delivery is None:
        return None
    status = claims.finish(session, delivery=delivery, result=tasks.deliver(delivery), now=now)
    session.flush()
    session.refresh(action)
    return status


def attempts(session: Session, action: Action) -> list[tuple[int, str, str | None]]:
    rows = session.scalars(
        select(ActionAttempt)
        .where(ActionAttempt.action_id == action.id)
        .order_by(ActionAttempt.attempt)
    )
    return [(a.attempt, a.outcome, a.detail) for a in rows]


def test_a_webhook_is_signed_and_sent_once_with_its_idempotency_key(
    client: TestClient, session: Session, keys, setup: Path, sink: HttpSink
) -> None:
    (action,) = fire(client, session, keys, customer("w1"), view("w1", "crm"))
    assert action.channel == "webhook"
    assert action.status == "pending"
    assert run(session, action) == "sent"
    (got,) = sink.received
    assert got.signature_ok
    assert got.webhook_id == action.key
    assert got.body["type"] == "action.webhook"
    assert got.body["data"]["rule"] == {"ruleset": "test_actions", "id": "notify_crm", "version": 1}
    assert got.body["data"]["action"]["params"] == {"product": "crm"}
    # A redelivered task finds it sent: no second request.
    assert run(session, action) is None
    assert len(sink.received) == 1
    assert attempts(session, action) == [(1, "sent", "HTTP 200")]


def test_the_same_event_evaluated_twice_makes_one_action(
    client: TestClient, session: Session, keys, setup: Path
) -> None:
    fire(client, session, keys, customer("w2"), view("w2", "crm"))
    session.execute(text("UPDATE events SET evaluated_at = NULL"))
    evaluate(session, now=NOW)
    assert session.scalar(select(text("count(*)")).select_from(Action)) == 1


def test_server_errors_are_retried_with_backoff_until_delivered(
    client: TestClient, session: Session, keys, setup: Path, sink: HttpSink
) -> None:
    sink.script = [500, 503, (429, "120")]
    (action,) = fire(client, session, keys, customer("w3"), view("w3", "crm"))
    now = NOW
    for expected in ("pending", "pending", "pending"):
        assert run(session, action, now=now) == expected
        assert action.next_attempt_at > now
        if expected == "pending" and len(sink.received) == 3:
            # Retry-After: 120 is honoured.
            assert action.next_attempt_at >= now + timedelta(seconds=120)
        # Not due yet: a task that arrives early does nothing.
        assert run(session, action, now=now) is None
        now = action.next_attempt_at
    assert run(session, action, now=now) == "sent"
    assert [r.status for r in sink.received] == [500, 503, 429, 200]
    assert sink.effects == [action.key]  # the same key on every attempt
    assert [a[1] for a in attempts(session, action)] == ["retry", "retry", "retry", "sent"]


def test_a_client_error_is_dead_at_once_and_can_be_retried(
    client: TestClient, session: Session, keys, setup: Path, sink: HttpSink
) -> None:
    sink.script = [400]
    (action,) = fire(client, session, keys, customer("w4"), view("w4", "crm"))
    assert run(session, action) == "dead"
    assert action.last_error == "HTTP 400"
    assert len(sink.received) == 1
    listed = client.get("/v1/actions?status=dead", headers=keys["marketer"]).json()
    assert [a["id"] for a in listed["items"]] == [action.id]
    assert listed["items"][0]["attempts"][0]["outcome"] == "dead"

    retried = client.post(f"/v1/actions/{action.id}/retry", headers=keys["marketer"])
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    session.refresh(action)
    assert run(session, action, now=datetime.now(UTC)) == "sent"
    again = client.post(f"/v1/actions/{action.id}/retry", headers=keys["marketer"])
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert client.post("/v1/actions/999999/retry", headers=keys["marketer"]).status_code == 404


def test_the_last_attempt_failing_leaves_it_dead(
    client: TestClient, session: Session, keys, setup: Path, sink: HttpSink, monkeypatch
) -> None:
    monkeypatch.setattr(get_settings(), "action_max_attempts", 2)
    sink.script = [500, 500]
    (action,) = fire(client, session, keys, customer("w5"), view("w5", "crm"))
    assert run(session, action) == "pending"
    assert run(session, action, now=action.next_attempt_at) == "dead"
    assert action.last_error == "HTTP 500"
    assert [a[1] for a in attempts(session, action)] == ["retry", "dead"]


def test_an_unreachable_receiver_is_retried(
    client: TestClient, session: Session, keys, setup: Path, monkeypatch
) -> None:
    monkeypatch.setattr(
        get_settings(),
        "action_destinations",
        {"sink": Destination(url="http://127.0.0.1:9/nothing", secret="s", timeout_s=1)},
    )
    (action,) = fire(client, session, keys, customer("w6"), view("w6", "crm"))
    assert run(session, action) == "pending"
    assert action.last_error.startswith("connection failed")


def test_a_worker_that_dies_mid_delivery_is_taken_over_after_its_lease(
    client: TestClient, session: Session, keys, setup: Path, sink: HttpSink
) -> None:
    (action,) = fire(client, session, keys, customer("w7"), view("w7", "crm"))
    first = claims.claim(session, action_id=action.id, now=NOW)
    assert first is not None
    tasks.deliver(first)  # delivered, then the worker died before recording it
    # The broker redelivers at once: the lease still holds.
    assert claims.claim(session, action_id=action.id, now=NOW + timedelta(seconds=5)) is None
    later = NOW + timedelta(seconds=31)
    second = claims.claim(session, action_id=action.id, now=later)
    assert second is not None
    assert second.attempt == 2
    assert second.key == first.key
    claims.finish(session, delivery=second, result=tasks.deliver(second), now=later)
    # The first worker's late report changes nothing.
    assert (
        claims.finish(session, delivery=first, result=channels.Result("sent", "x"), now=later)
        == "sent"
    )
    session.refresh(action)
    assert action.status == "sent"
    assert len(sink.received) == 2
    assert sink.effects == [action.key]
    assert [a[1] for a in attempts(session, action)] == ["lost", "sent"]


def test_hand_over_sends_each_due_action_once_until_it_is_stale(
    client: TestClient, session: Session, keys, setup: Path
) -> None:
    (action,) = fire(client, session, keys, customer("w8"), view("w8", "crm"))
    assert actions.hand_over(session, now=NOW, limit=10) == [action.id]
    assert actions.hand_over(session, now=NOW + timedelta(seconds=1), limit=10) == []
    # Lost on the way (broker down): handed again after ACTION_REENQUEUE_S.
    stale = NOW + timedelta(seconds=get_settings().action_reenqueue_s + 1)
    assert actions.hand_over(session, now=stale, limit=10) == [action.id]


def test_an_offer_email_reaches_the_smtp_server_once(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list
) -> None:
    (action,) = fire(client, session, keys, customer("m1"), view("m1", "mail", name="Teapot"))
    assert run(session, action) == "sent"
    (message,) = mailbox
    assert message["To"] == "m1@shop.example"
    assert message["Subject"] == "Teapot for Ada"
    assert action.key in message["Message-ID"]
    assert "Code SAVE5." in message.get_content()
    (offer,) = session.scalars(select(InboxItem))
    assert (offer.kind, offer.name, offer.action_id) == ("offer", "SAVE5", action.id)
    assert offer.expires_at == NOW + timedelta(days=2)
    assert run(session, action) is None
    assert len(mailbox) == 1


def test_no_marketing_without_consent(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list
) -> None:
    (action,) = fire(client, session, keys, customer("m2", marketing=False), view("m2", "mail"))
    assert run(session, action) is None
    assert (action.status, action.reason) == ("cancelled", "no consent for marketing")
    assert mailbox == []


def test_consent_withdrawn_through_the_api_before_sending_cancels(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list
) -> None:
    (action,) = fire(client, session, keys, customer("m3"), view("m3", "mail"))
    put = client.put(
        "/v1/profiles/user_id:m3/consent", json={"marketing": False}, headers=keys["ingest"]
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"consent": {"marketing": False}, "effective": {"marketing": False}}
    # An identify that happened before the withdrawal, delivered after it, does not undo it.
    send(client, keys, {**customer("m3", marketing=True), "messageId": "late-identify"})
    resolve_all()
    assert run(session, action) is None
    assert (action.status, action.reason) == ("cancelled", "no consent for marketing")
    assert mailbox == []
    bad = client.put(
        "/v1/profiles/user_id:m3/consent", json={"marketing": "yes"}, headers=keys["ingest"]
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert any("marketing" in e["field"] for e in bad.json()["errors"]), bad.json()


def test_quiet_hours_defer_email_to_the_morning_in_the_customer_timezone(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list, monkeypatch
) -> None:
    monkeypatch.setattr(get_settings(), "quiet_hours", "21:00-08:00")
    (action,) = fire(
        client, session, keys, customer("m4", timezone="Asia/Tokyo"), view("m4", "mail")
    )
    # 23:30 in Tokyo is 14:30 UTC.
    night = datetime(2030, 5, 1, 14, 30, tzinfo=UTC)
    session.execute(
        text("UPDATE actions SET next_attempt_at = :t, payload = payload - 'expires_at'"),
        {"t": night},
    )
    session.refresh(action)
    assert run(session, action, now=night) is None
    assert action.status == "pending"
    assert action.next_attempt_at == datetime(2030, 5, 1, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
    assert "quiet hours" in action.reason
    assert run(session, action, now=action.next_attempt_at) == "sent"
    assert len(mailbox) == 1


def test_the_email_frequency_cap_holds_per_customer(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list
) -> None:
    first, second = fire(
        client,
        session,
        keys,
        customer("m5"),
        view("m5", "mail", minutes=10),
        view("m5", "mail", minutes=5),
    )
    assert run(session, first) == "sent"
    assert run(session, second) is None
    assert (second.status, second.reason) == ("cancelled", "frequency cap: 1 email per 24 h")
    assert len(mailbox) == 1


def test_an_expired_offer_is_not_sent(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list
) -> None:
    (action,) = fire(client, session, keys, customer("m6"), view("m6", "mail"))
    assert run(session, action, now=NOW + timedelta(days=3)) is None
    assert action.status == "cancelled"
    assert action.reason.startswith("expired at")


def test_a_missing_template_is_dead_with_its_name(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list
) -> None:
    (setup / "templates" / "test_offer.yaml").unlink()
    (action,) = fire(client, session, keys, customer("m7"), view("m7", "mail"))
    assert run(session, action) is None
    assert action.status == "dead"
    assert "no email template" in action.last_error
    assert "test_offer.yaml" in action.last_error


def test_inbox_offers_and_segment_changes_are_stored_once(
    client: TestClient, session: Session, keys, setup: Path
) -> None:
    offer, segment = fire(client, session, keys, customer("i1"), view("i1", "keep"))
    assert (offer.channel, segment.channel) == ("inbox", "segment")
    assert offer.purpose == "marketing"
    assert segment.purpose is None
    assert run(session, offer) is None
    assert offer.status == "sent"
    assert run(session, segment) is None
    assert segment.status == "sent"
    (item,) = session.scalars(select(InboxItem))
    assert item.expires_at == NOW + timedelta(hours=1)
    (member,) = session.scalars(select(SegmentMembership))
    assert (member.segment, member.added_by) == ("vip", "rule:keep_offer")
    assert run(session, offer) is None
    assert session.scalar(select(text("count(*)")).select_from(InboxItem)) == 1


def test_a_customers_actions_and_waits_are_listed_with_reasons(
    client: TestClient, session: Session, keys, setup: Path, mailbox: list
) -> None:
    fire(client, session, keys, customer("l1", marketing=False), view("l1", "mail"))
    (action,) = session.scalars(select(Action))
    run(session, action)
    body = client.get("/v1/profiles/user_id:l1/actions", headers=keys["marketer"]).json()
    (listed,) = body["actions"]
    assert listed["status"] == "cancelled"
    assert listed["reason"] == "no consent for marketing"
    assert listed["rule"] == {"ruleset": "test_actions", "id": "mail_offer", "version": 1}
    assert body["waiting"] == []
    missing = client.get("/v1/profiles/user_id:nobody/actions", headers=keys["marketer"])
    assert missing.status_code == 404


def test_a_waiting_cart_reminder_is_listed_then_cancelled_by_the_order(
    client: TestClient, session: Session, keys, tmp_path: Path, monkeypatch
) -> None:
    import shutil

    directory = tmp_path / "shipped"
    shutil.copytree(SHIPPED, directory)
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    assert deployments.reload(session, directory=directory, origin="cli").status == "active"
    added = track(
        "Product Added",
        user="l2",
        cart_id="c9",
        product_id="p1",
        timestamp=(NOW - timedelta(hours=1)).isoformat(),
    )
    fire(client, session, keys, customer("l2"), added)
    body = client.get("/v1/profiles/user_id:l2/actions", headers=keys["marketer"]).json()
    (wait,) = body["waiting"]
    assert (wait["status"], wait["rule"]["id"]) == ("scheduled", "cart_abandoned")
    assert wait["guard"][0]["same"] == {"cart_id": "c9"}
    assert wait["cancel_on"] == ["Checkout Started", "Order Completed"]
    order = track(
        "Order Completed", user="l2", cart_id="c9", order_id="o9", timestamp=NOW.isoformat()
    )
    fire(client, session, keys, order)
    body = client.get("/v1/profiles/user_id:l2/actions", headers=keys["marketer"]).json()
    waits = {w["rule"]["id"]: w for w in body["waiting"]}
    assert waits["cart_abandoned"]["status"] == "cancelled"
    assert "Order Completed" in waits["cart_abandoned"]["reason"]


def test_every_template_the_shipped_rules_name_exists_and_renders() -> None:
    sample = {
        "offer": {"offer": "CODE", "expires_at": "2030-01-01T00:00:00+00:00"},
        "params": {},
        "profile": {"traits": {}},
    }
    names = [
        action.offer.template
        for loaded in load_directory(SHIPPED)
        for rule in loaded.definition.rules
        for action in rule.actions
        if getattr(action, "offer", None) is not None and action.offer.channel == "email"
    ]
    assert len(names) == 4
    for name in names:
        template = templates.load(SHIPPED, name)
        subject, body = templates.render(template, sample)
        assert subject
        assert "CODE" in body


def test_the_cli_lists_dead_actions_and_retries_them(
    client: TestClient, session: Session, keys, setup: Path, sink: HttpSink
) -> None:
    from click.testing import CliRunner

    from service.cli import main

    sink.script = [404]
    (action,) = fire(client, session, keys, customer("c1"), view("c1", "crm"))
    assert run(session, action) == "dead"
    listed = CliRunner().invoke(main, ["actions", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output == f"{action.id}\twebhook\t1\ttest_actions/notify_crm\tHTTP 404\n"
    retried = CliRunner().invoke(main, ["actions", "retry", str(action.id)])
    assert retried.exit_code == 0, retried.output
    session.refresh(action)
    assert (action.status, action.attempts) == ("pending", 0)
    again = CliRunner().invoke(main, ["actions", "retry", str(action.id)])
    assert again.exit_code == 1
    assert "not dead" in again.output
