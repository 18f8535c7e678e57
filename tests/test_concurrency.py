"""Concurrent transactions on a real database: the same identity never splits."""

from __future__ import annotations

import threading
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


def test_concurrent_first_events_of_one_visitor_make_one_profile(make_database) -> None:
    engine = create_engine(make_database("race"), pool_size=8)
    rounds, writers = 10, 4
    try:
        for round_ in range(rounds):
            visitor = f"visitor-{round_}"
            barrier = threading.Barrier(writers)
            failures: list[BaseException] = []

            def write(
                visitor: str = visitor,
                barrier: threading.Barrier = barrier,
                failures: list[BaseException] = failures,
            ) -> None:
                try:
                    with Session(engine) as session, session.begin():
                        barrier.wait()
                        service.store(session, events=[event(visitor)])
                except BaseException as exc:
                    failures.append(exc)

            threads = [threading.Thread(target=write) for _ in range(writers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not failures, failures

        with engine.connect() as conn:
            per_visitor = conn.execute(
                text(
                    "SELECT i.value, count(DISTINCT e.customer_id), count(e.id) FROM identities i "
                    "JOIN events e ON e.customer_id = i.customer_id GROUP BY i.value"
                )
            ).all()
            customers = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
        assert len(per_visitor) == rounds
        assert all(profiles == 1 and events == writers for _, profiles, events in per_visitor)
        assert customers == rounds
    finally:
        engine.dispose()
