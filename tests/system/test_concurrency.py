"""Concurrency on a real database: one visitor's events never split between resolvers;
overlapping batches sent at once are each answered and store each message once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from service.events import intake
from service.events.canonical import CanonicalEvent, Identifiers
from service.profiles import resolution
from tests import support


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
                assert resolution.resolve_pending(session, limit=1) == 1
        except BaseException as exc:
            failures.append(exc)

    with Session(engine) as first, first.begin():
        assert resolution.resolve_pending(first, limit=1) == 1
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
            intake.store(session, events=[event("visitor-1"), event("visitor-1")])

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
    from service.events.api_events import ingest_api_events

    engine = create_engine(make_database("merge_race"))

    def store(*raw: dict) -> None:
        with Session(engine) as session, session.begin():
            ingest_api_events(session, raw_events=list(raw))

    def resolve_all() -> None:
        with Session(engine) as session, session.begin():
            while resolution.resolve_pending(session):
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


# --- intake under concurrent, overlapping batches -----------------------------------

SENDERS = 5
BATCHES = 100
EVENTS_PER_BATCH = 200
MESSAGE_IDS = 2_000  # shared by every sender: each id is sent about ten times


def _overlapping_batches(seed: int) -> list[list[dict]]:
    """100 batches drawing their message ids from one pool, each in its own order: two
    batches share about 20 ids, and a redelivery of one id arrives at the same time."""
    rng = random.Random(seed)
    return [
        [
            {
                "type": "track",
                "event": "Product Viewed",
                "messageId": f"m-{n}",
                "anonymousId": f"visitor-{n % 300}",
                "timestamp": "2026-11-20T10:00:00Z",
                "properties": {"product_id": f"p{n % 50}"},
            }
            for n in rng.sample(range(MESSAGE_IDS), EVENTS_PER_BATCH)
        ]
        for _ in range(BATCHES)
    ]


@pytest.mark.slow
def test_concurrent_overlapping_batches_store_each_message_once(
    make_database, tmp_path: Path
) -> None:
    """100 batches from 5 senders (keys; three on the events API, two on Segment's batch
    call) sent at once, sharing message ids: every one is answered 2xx, and each id is
    stored exactly once and counted accepted exactly once."""
    url: str = make_database("ingest_race")
    port = support.free_port()
    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    env.update(DATABASE_URL=url, PORT=str(port), API_WORKERS="1", RULES_WATCH="false")
    keys = [support.cli_key(env, "ingest", name=f"sender-{i}") for i in range(SENDERS)]
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "api.log").open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    batches = _overlapping_batches(seed=15)
    start = threading.Barrier(BATCHES)

    def send(index: int) -> httpx.Response:
        path = "/v1/events" if index % SENDERS < 3 else "/v1/batch"
        with httpx.Client(base_url=base, timeout=120) as client:
            start.wait(timeout=60)
            return client.post(path, json={"batch": batches[index]}, headers=keys[index % SENDERS])

    try:
        support.wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, timeout=60)
        with ThreadPoolExecutor(max_workers=BATCHES) as pool:
            responses = list(pool.map(send, range(BATCHES)))
    finally:
        api.terminate()
        api.wait(timeout=30)

    statuses = Counter(r.status_code for r in responses)
    failed = [r.text[:300] for r in responses if r.status_code != 200]
    assert statuses == {200: BATCHES}, (statuses, failed[:3])
    answers = [r.json() for r in responses]
    distinct = {e["messageId"] for batch in batches for e in batch}
    assert sum(a["accepted"] for a in answers) == len(distinct)
    assert sum(a["duplicates"] for a in answers) == BATCHES * EVENTS_PER_BATCH - len(distinct)
    assert all(a["rejected"] == 0 for a in answers)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT count(*), count(DISTINCT message_id) FROM events")
            ).one()
    finally:
        engine.dispose()
    assert tuple(stored) == (len(distinct), len(distinct))
