"""The facts marketers reach for (orders and spend in the last 30/90/365 days, CLV,
discount use, categories viewed and bought) in rule conditions and in segment
conditions, evaluated by the service over events sent through the intake; a segment on
a window is left when time alone moves an order out of it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from service.rules import deployments
from service.ruleset.runtime import RUNTIME
from service.segments import service
from service.settings import get_settings
from tests.support.events import track
from tests.support.rules import NOW, at, evaluate, send

RULE_FILE = """
ruleset: marketer_facts
version: 1
rules:
  - id: spent_over_500_in_90_days
    trigger: {event: Page Viewed}
    when: [{profile.spent_90d: {gt: 500}}]
    actions: [{segment: {add: r_spent_90d}}]
  - id: big_order_this_month
    trigger: {event: Page Viewed}
    when: [{profile.spent_30d: {gte: 500}}, {profile.orders_30d: {gte: 1}}]
    actions: [{segment: {add: r_month}}]
  - id: regular_this_year
    trigger: {event: Page Viewed}
    when:
      - profile.orders_365d: {gte: 2}
      - profile.spent_365d: {gte: 700}
      - profile.orders_90d: {eq: 1}
    actions: [{segment: {add: r_year}}]
  - id: lifetime_value_over_600
    trigger: {event: Page Viewed}
    when: [{profile.clv: {gte: 600}}]
    actions: [{segment: {add: r_clv}}]
  - id: uses_discounts
    trigger: {event: Page Viewed}
    when: [{profile.discount_share: {gte: 0.5}}, {profile.discount_orders: {gte: 1}}]
    actions: [{segment: {add: r_discounts}}]
  - id: bought_games
    trigger: {event: Page Viewed}
    when: [{profile.categories_bought: {contains: Games}}]
    actions: [{segment: {add: r_games}}]
  - id: browsed_books
    trigger: {event: Page Viewed}
    when: [{profile.categories_viewed: {contains: Books}}]
    actions: [{segment: {add: r_books}}]
  - id: never_browsed_books
    trigger: {event: Page Viewed}
    when: [{profile.categories_viewed: {not_contains: Books}}]
    actions: [{segment: {add: r_no_books}}]
tests:
  - name: a big spender this quarter
    profile: {spent_90d: 750}
    events: [{at: 0h, event: Page Viewed}]
    expect: [{rule: spent_over_500_in_90_days}, {rule: never_browsed_books}]
  - name: a customer who bought games and browsed books with coupons
    profile:
      categories_bought: [Games]
      categories_viewed: [Books]
      discount_orders: 2
      discount_share: 0.5
      clv: 650
    events: [{at: 0h, event: Page Viewed}]
    expect:
      - {rule: lifetime_value_over_600}
      - {rule: uses_discounts}
      - {rule: bought_games}
      - {rule: browsed_books}
"""

SEGMENTS = {
    "big_spenders_90d": "- profile.spent_90d: {gte: 500}",
    "active_last_30d": "- profile.orders_30d: {gte: 1}\n  - profile.spent_30d: {gt: 0}",
    "regulars": "- profile.orders_365d: {gte: 2}\n  - profile.spent_365d: {gte: 700}\n"
    "  - profile.orders_90d: {gte: 1}",
    "high_clv": "- profile.clv: {gte: 600}",
    "deal_seekers": "- profile.discount_share: {gte: 0.5}\n  - profile.discount_orders: {gte: 1}",
    "games_buyers": "- profile.categories_bought: {contains: Games}",
    "book_browsers": "- profile.categories_viewed: {contains: Books}",
}
SEGMENT_TESTS = {
    "big_spenders_90d": "{spent_90d: 520}",
    "active_last_30d": "{orders_30d: 1, spent_30d: 40}",
    "regulars": "{orders_365d: 3, spent_365d: 900, orders_90d: 1}",
    "high_clv": "{total_spent: 800}",  # CLV and total spent are one amount
    "deal_seekers": "{discount_orders: 1, discount_share: 1.0}",
    "games_buyers": "{categories_bought: [Books, Games]}",
    "book_browsers": "{categories_viewed: [Books]}",
}


def segment_file(name: str) -> str:
    return (
        f"segment: {name}\nversion: 1\nwhen:\n  {SEGMENTS[name]}\n"
        f"tests:\n  - name: in\n    profile: {SEGMENT_TESTS[name]}\n    expect: in\n"
        "  - name: a new customer is out\n    expect: out\n"
    )


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST)}


@pytest.fixture
def active(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    directory = tmp_path / "rules"
    (directory / "segments").mkdir(parents=True)
    (directory / "marketer_facts.yaml").write_text(RULE_FILE)
    for name in SEGMENTS:
        (directory / "segments" / f"{name}.yaml").write_text(segment_file(name))
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    result = deployments.reload(session, directory=directory, origin="cli")
    assert result.status == "active", result.errors
    assert result.deployment_id is not None
    finish_runs(session, now=NOW)  # the first activation's backfill, of no one
    return result.deployment_id


def finish_runs(session: Session, *, now: datetime) -> None:
    while service.advance(
        session, engine=RUNTIME.engine, definitions=RUNTIME.active, now=now, batch=100
    ):
        pass


def ago(days: float) -> str:
    return at(-timedelta(days=days))


def order(user: str, order_id: str, total: str, *, days: float, **props: Any) -> dict:
    return track(
        "Order Completed",
        user=user,
        order_id=order_id,
        total=total,
        currency="USD",
        timestamp=ago(days),
        **props,
    )


def customers(session: Session) -> dict[str, uuid.UUID]:
    rows = session.execute(text("SELECT value, customer_id FROM identities WHERE kind = 'user_id'"))
    return {row.value: row.customer_id for row in rows}


def fired(session: Session, customer: uuid.UUID) -> set[str]:
    rows = session.execute(
        text("SELECT rule_id FROM rule_firings WHERE customer_id = :c"), {"c": customer}
    )
    return {row.rule_id for row in rows}


def segments(session: Session, customer: uuid.UUID) -> set[str]:
    rows = session.execute(
        text(
            "SELECT segment FROM segment_memberships WHERE customer_id = :c "
            "AND exited_at IS NULL AND added_by = 'definition'"
        ),
        {"c": customer},
    )
    return {row.segment for row in rows}


def shop(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    """`big` spent 600 ten days ago with a coupon (games) and 100 two hundred days ago,
    and browsed books; `small` spent 50 a hundred days ago (garden), browsing garden.
    Then each views a page now."""
    send(
        client,
        keys,
        order("big", "b1", "600.00", days=10, coupon="VIP", products=[{"category": "Games"}]),
        order("big", "b2", "100.00", days=200),
        track("Product Viewed", user="big", product_id="p1", category="Books", timestamp=ago(3)),
        order("small", "s1", "50.00", days=100, products=[{"category": "Garden"}]),
        track("Product Viewed", user="small", product_id="p2", category="Garden", timestamp=ago(3)),
    )
    send(
        client,
        keys,
        track("Page Viewed", user="big", timestamp=at(-timedelta(minutes=5))),
        track("Page Viewed", user="small", timestamp=at(-timedelta(minutes=5))),
    )


def test_each_fact_in_a_rule_condition(
    client: TestClient, session: Session, keys, active: int
) -> None:
    shop(client, keys)
    evaluate(session)
    who = customers(session)
    assert fired(session, who["big"]) == {
        "spent_over_500_in_90_days",
        "big_order_this_month",
        "regular_this_year",
        "lifetime_value_over_600",
        "uses_discounts",
        "bought_games",
        "browsed_books",
    }
    assert fired(session, who["small"]) == {"never_browsed_books"}


def test_each_fact_in_a_segment_condition_and_windows_that_slide_out(
    client: TestClient, session: Session, keys, active: int
) -> None:
    shop(client, keys)
    evaluate(session)
    who = customers(session)
    assert segments(session, who["big"]) == set(SEGMENTS)
    assert segments(session, who["small"]) == set()
    # 85 days on, with no event: the 600 order is 95 days old, out of the last 30 and
    # the last 90 days; the customer's other segments stay.
    assert service.start_refresh(session, segments=SEGMENTS) is not None
    finish_runs(session, now=NOW + timedelta(days=85))
    assert segments(session, who["big"]) == {
        "high_clv",
        "deal_seekers",
        "games_buyers",
        "book_browsers",
    }
