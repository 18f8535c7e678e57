"""An event in the same second as a waiting rule's trigger is inside its absence window.

Shopify and WooCommerce send times to the second, so a checkout and its order often
carry the same `created_at`: the order must cancel the reminder whichever of the two
is stored, resolved or evaluated first. The in-file tester and the service share the
window's definition (`evaluator.absence_window`); both are checked here.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service import flow
from service.language.engine import Engine
from service.language.loader import load_source
from service.rules import deployments
from service.rules.testing import run_file
from service.settings import get_settings
from tests.support import resolve_all
from tests.support import webhooks as send
from tests.support.webhooks import fixture

RULES = """\
ruleset: checkout_recovery
version: 1
rules:
  - id: checkout_reminder
    trigger: {event: Checkout Started}
    when:
      - absent: {events: [Order Completed], within: 1h, same: [checkout_id]}
    actions:
      - webhook: {destination: sink}
tests:
  - name: an order in the same second as its checkout cancels the reminder
    events:
      - {at: 0s, event: Checkout Started, properties: {checkout_id: k1}}
      - {at: 0s, event: Order Completed, properties: {checkout_id: k1, order_id: o1}}
    expect: []
  - name: stored the other way round, too
    events:
      - {at: 0s, event: Order Completed, properties: {checkout_id: k1, order_id: o1}}
      - {at: 0s, event: Checkout Started, properties: {checkout_id: k1}}
    expect: []
  - name: an order a second before the checkout does not
    events:
      - {at: 0s, event: Order Completed, properties: {checkout_id: k1, order_id: o1}}
      - {at: 1s, event: Checkout Started, properties: {checkout_id: k1}}
    expect:
      - {rule: checkout_reminder, at: 3601s}
  - name: an order at the window's last second does
    events:
      - {at: 0s, event: Checkout Started, properties: {checkout_id: k1}}
      - {at: 1h, event: Order Completed, properties: {checkout_id: k1, order_id: o1}}
    expect: []
"""


def test_the_in_file_tester_counts_an_order_in_the_same_second() -> None:
    results = run_file(load_source("checkout.yaml", RULES), engine=Engine(), consent_defaults={})
    assert [(r.name, r.failures) for r in results] == [(r.name, []) for r in results]
    assert len(results) == 4


# --- the service, from signed webhooks -------------------------------------------------------

SECOND = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture
def active(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "checkout.yaml").write_text(RULES)
    shutil.copytree(
        Path(__file__).resolve().parents[2] / "rules" / "templates", directory / "templates"
    )
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    assert deployments.reload(session, directory=directory, origin="cli").status == "active"


def _customer_id(token: str) -> int:
    return int(token.encode().hex(), 16) % 10**12


def _checkout(client: TestClient, token: str) -> None:
    payload = fixture("shopify_checkouts_create.json")
    payload.update(token=token, email=f"{token}@shop.example", created_at=SECOND.isoformat())
    payload["customer"].update(email=f"{token}@shop.example", id=_customer_id(token))
    assert send.shopify(client, "checkouts/create", payload).status_code == 200


def _order(client: TestClient, token: str) -> None:
    payload = fixture("shopify_orders_create.json")
    stamp = SECOND.isoformat()
    payload.update(
        id=abs(hash(token)) % 10**12,
        checkout_token=token,
        email=f"{token}@shop.example",
        created_at=stamp,
        processed_at=stamp,
    )
    if payload.get("customer"):
        payload["customer"].update(email=f"{token}@shop.example", id=_customer_id(token))
    assert send.shopify(client, "orders/create", payload).status_code == 200


def _evaluate(session: Session) -> None:
    resolve_all()
    while flow.evaluate_pending(session):
        pass


def _reminders(session: Session, token: str) -> list[tuple[str, str | None]]:
    rows = session.execute(
        text(
            "SELECT f.status, f.reason FROM rule_firings AS f JOIN events AS e "
            "ON e.id = f.event_id WHERE e.properties ->> 'checkout_id' = :token ORDER BY f.id"
        ),
        {"token": token},
    )
    return [(r.status, r.reason) for r in rows]


def _actions(session: Session) -> int:
    return int(session.execute(text("SELECT count(*) FROM actions")).scalar_one())


@pytest.mark.usefixtures("active")
def test_an_order_in_the_checkouts_second_evaluated_after_it_cancels_the_wait(
    client: TestClient, session: Session
) -> None:
    _checkout(client, "tok-s1")
    _evaluate(session)
    assert [s for s, _ in _reminders(session, "tok-s1")] == ["scheduled"]
    _order(client, "tok-s1")
    _evaluate(session)
    ((status, reason),) = _reminders(session, "tok-s1")
    assert status == "cancelled"
    assert reason is not None
    assert "Order Completed" in reason
    assert flow.run_due(session, now=SECOND + timedelta(hours=2)) == 0
    assert _actions(session) == 0


@pytest.mark.usefixtures("active")
def test_an_order_in_the_checkouts_second_stored_first_means_no_wait(
    client: TestClient, session: Session
) -> None:
    _order(client, "tok-s2")
    _evaluate(session)
    _checkout(client, "tok-s2")
    _evaluate(session)
    assert _reminders(session, "tok-s2") == []
    assert _actions(session) == 0


@pytest.mark.usefixtures("active")
def test_a_checkout_with_no_order_still_gets_the_reminder_at_its_due_time(
    client: TestClient, session: Session
) -> None:
    _checkout(client, "tok-s3")
    _evaluate(session)
    assert flow.run_due(session, now=SECOND + timedelta(hours=1)) == 1
    assert [s for s, _ in _reminders(session, "tok-s3")] == ["fired"]
    assert _actions(session) == 1
