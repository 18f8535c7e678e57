"""Concurrent resolvers on a real database: one visitor's events never split."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from service.events import service
from service.events.canonical import CanonicalEvent, Identifiers


def event(anonymous_id: str) -> CanonicalEvent:
    return CanonicalEvent(
        source="api",
        message_id=uuid.uuid4().hex,
        type="track",
        name="Product Viewed",
        occurred_at=datetime.now(UTC),
        identifiers=Identifiers(anonymous_id=anonymous_id),
        properties={"product_id": "p1"},
    )


def resolve_second_while_first_is_open(engine: Engine) -> None:
    """Resolver A takes the oldest pending event and keeps its transaction open while
    resolver B, in another thread, takes the next one; then A commits and B finishes.
    B is now blocked on A, or (without the locks under test) has already decided."""
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with Session(engine) as session, session.begin():
                assert service.resolve_pending(session, limit=1) == 1
        except BaseException as exc:
            failures.append(exc)

    with Session(engine) as first, first.begin():
        assert service.resolve_pending(first, limit=1) == 1
        other = threading.Thread(target=second)
        other.start()
        time.sleep(0.5)
    other.join(timeout=30)
    assert not failures, failures


def test_a_second_resolver_waits_for_the_first_on_a_shared_identity(make_database) -> None:
    """Resolver A has put a new visitor's first event on a new profile but not yet
    committed; resolver B takes the visitor's second event. B must end on A's profile
    (without the identity lock it would see no owner and make a second profile)."""
    engine = create_engine(make_database("race"))
    try:
        with Session(engine) as session, session.begin():
            service.store(session, events=[event("visitor-1"), event("visitor-1")])

        resolve_second_while_first_is_open(engine)

        with engine.connect() as conn:
            customers = conn.execute(
                text("SELECT count(DISTINCT customer_id), count(*) FROM events")
            ).one()
            profiles = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
        assert tuple(customers) == (1, 2)
        assert profiles == 1
    finally:
        engine.dispose()


def test_an_event_resolved_during_a_merge_lands_on_the_winner(make_database) -> None:
    """Profile L (anonymous x, email E) is being merged into W (user u) by resolver A
    when resolver B resolves an order naming only E. B must wait for the merge and put
    the order on W; otherwise it would stay on the merged-away L for good."""
    from service.events.service import ingest_api_events

    engine = create_engine(make_database("merge_race"))

    def store(*raw: dict) -> None:
        with Session(engine) as session, session.begin():
            ingest_api_events(session, raw_events=list(raw))

    def resolve_all() -> None:
        with Session(engine) as session, session.begin():
            while service.resolve_pending(session):
                pass

    try:
        store(
            {
                "type": "identify",
                "anonymousId": "x",
                "timestamp": "2026-11-20T09:00:00Z",
                "traits": {"email": "e@example.com"},
            }
        )
        store({"type": "identify", "userId": "u", "timestamp": "2026-11-20T09:00:00Z"})
        resolve_all()
        store(
            {
                "type": "identify",
                "userId": "u",
                "anonymousId": "x",
                "messageId": "a",
                "timestamp": "2026-11-20T10:00:00Z",
            }
        )
        store(
            {
                "type": "track",
                "event": "Order Completed",
                "anonymousId": "y",
                "messageId": "b",
                "timestamp": "2026-11-20T10:05:00Z",
                "properties": {
                    "email": "e@example.com",
                    "order_id": "o-1",
                    "total": "50",
                    "currency": "EUR",
                },
            }
        )

        resolve_second_while_first_is_open(engine)  # A merges L into W; B takes the order

        with engine.connect() as conn:
            winner = conn.execute(
                text(
                    "SELECT c.id FROM customers c JOIN identities i ON i.customer_id = c.id "
                    "WHERE i.kind = 'user_id' AND i.value = 'u'"
                )
            ).scalar_one()
            on = conn.execute(
                text(
                    "SELECT (SELECT customer_id FROM events WHERE message_id = 'b'), "
                    "(SELECT customer_id FROM orders WHERE order_id = 'o-1'), "
                    "(SELECT customer_id FROM identities WHERE kind = 'anonymous_id' "
                    "AND value = 'y'), (SELECT orders_count FROM customers WHERE id = :w)"
                ),
                {"w": winner},
            ).one()
        assert tuple(on) == (winner, winner, winner, 1)
    finally:
        engine.dispose()
