"""Group commit: concurrent webhook deliveries are stored in one transaction, each
acknowledged only once committed, and a delivery the database refuses fails alone."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.events.repository import Received
from service.events.writer import write
from tests.support import libpq_url, resolve_all, wait_for
from tests.support import webhooks as send
from tests.support.webhooks import fixture


def delivery(delivery_id: str, payload: object, *, topic: str = "orders/create") -> Received:
    return Received(
        source="shopify",
        delivery_id=delivery_id,
        topic=topic,
        headers={},
        body=payload if isinstance(payload, bytes) else json.dumps(payload).encode(),
    )


def test_deliveries_arriving_together_share_one_transaction(
    client: TestClient, session: Session, database_url: str
) -> None:
    writer = client.app.state.delivery_writer  # type: ignore[attr-defined]
    payload = fixture("shopify_orders_create.json")
    with psycopg.connect(libpq_url(database_url)) as blocker:
        # Hold the first group's insert until all the others are waiting behind it.
        blocker.execute("LOCK TABLE webhook_deliveries IN EXCLUSIVE MODE")
        with ThreadPoolExecutor(12) as pool:
            try:
                sent = [
                    pool.submit(
                        send.shopify, client, "orders/create", payload, event_id=f"e{i % 10}"
                    )
                    for i in range(12)
                ]
                wait_for(
                    lambda: (writer.in_flight == 12 and writer.waiting > 0) or None,
                    timeout=20,
                    interval=0.01,
                )
            finally:
                blocker.rollback()  # else a failure above would wait on the lock forever
            statuses = sorted(f.result().json()["status"] for f in sent)

    assert statuses == ["duplicate"] * 2 + ["processed"] * 10
    transactions = session.execute(
        text("SELECT count(DISTINCT xmin::text) FROM webhook_deliveries")
    ).scalar_one()
    assert transactions == 2
    assert session.execute(text("SELECT count(*) FROM events")).scalar_one() == 10


def test_a_group_reports_each_delivery_in_order(connection: object, session: Session) -> None:
    order = fixture("shopify_orders_create.json")
    broken = dict(order, total_price="twelve")
    assert write([delivery("seen", order)]) == [("processed", 1)]

    results = write(
        [
            delivery("new", dict(order, id=2)),
            delivery("seen", order),  # stored by an earlier group
            delivery("bad", broken),  # kept and quarantined
            delivery("gone", order, topic="checkouts/delete"),  # nothing to map
            delivery("new", dict(order, id=2)),  # twice in this group
            delivery("not-json", b"{"),
        ]
    )

    assert results == [
        ("processed", 1),
        ("duplicate", 0),
        ("quarantined", 0),
        ("ignored", 0),
        ("duplicate", 0),
        ("quarantined", 0),
    ]
    statuses = dict(
        session.execute(text("SELECT delivery_id, status FROM webhook_deliveries")).all()
    )
    assert statuses == {
        "seen": "processed",
        "new": "processed",
        "bad": "quarantined",
        "gone": "ignored",
        "not-json": "quarantined",
    }
    assert session.execute(text("SELECT count(*) FROM quarantine")).scalar_one() == 2
    assert resolve_all() == 2


def test_a_delivery_the_database_refuses_fails_alone(connection: object, session: Session) -> None:
    order = fixture("shopify_orders_create.json")
    results = write(
        [
            delivery("before", dict(order, id=1)),
            delivery("refused", order, topic="t" * 300),  # longer than its column
            delivery("after", dict(order, id=3)),
        ]
    )
    assert results[0] == ("processed", 1)
    assert results[2] == ("processed", 1)
    assert isinstance(results[1], Exception)
    stored = session.execute(text("SELECT delivery_id FROM webhook_deliveries")).scalars().all()
    assert sorted(stored) == ["after", "before"]
