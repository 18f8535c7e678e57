"""Concurrent resolvers on a real database: one visitor's events never split."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
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


def test_a_second_resolver_waits_for_the_first_on_a_shared_identity(make_database) -> None:
    """Resolver A has put a new visitor's first event on a new profile but not yet
    committed; resolver B takes the visitor's second event. B must end on A's profile
    (without the identity lock it would see no owner and make a second profile)."""
    engine = create_engine(make_database("race"))
    try:
        with Session(engine) as session, session.begin():
            service.store(session, events=[event("visitor-1"), event("visitor-1")])

        failures: list[BaseException] = []

        def second_resolver() -> None:
            try:
                with Session(engine) as session, session.begin():
                    assert service.resolve_pending(session, limit=1) == 1
            except BaseException as exc:
                failures.append(exc)

        with Session(engine) as first, first.begin():
            assert service.resolve_pending(first, limit=1) == 1
            other = threading.Thread(target=second_resolver)
            other.start()
            time.sleep(0.5)  # B is now blocked, or (without the lock) has decided wrongly
        other.join(timeout=30)
        assert not failures, failures

        with engine.connect() as conn:
            customers = conn.execute(
                text("SELECT count(DISTINCT customer_id), count(*) FROM events")
            ).one()
            profiles = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
        assert tuple(customers) == (1, 2)
        assert profiles == 1
    finally:
        engine.dispose()
