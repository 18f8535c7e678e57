"""Two timers processes at once, on real concurrent transactions: each waiting rule is
decided once and each due action is handed over once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from service import flow
from service.actions import service as actions
from service.rules import deployments

N = 300
RULES = """
ruleset: timers
version: 1
rules:
  - id: later
    trigger: {event: Product Viewed}
    delay: 1h
    actions:
      - segment: {add: viewed}
"""


def in_two_threads(engine, step: Callable[[Session], list[int]]) -> list[list[int]]:
    """Run `step` in two threads, each in its own transactions, until both find nothing."""
    results: list[list[int]] = [[], []]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def loop(slot: int) -> None:
        try:
            start.wait()
            while True:
                with Session(engine) as session, session.begin():
                    got = step(session)
                if not got:
                    return
                results[slot].extend(got)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    return results


def test_two_timers_decide_each_waiting_rule_and_hand_each_action_over_once(
    make_database, tmp_path: Path
) -> None:
    engine = create_engine(make_database("timers"))
    (tmp_path / "timers.yaml").write_text(RULES)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        assert deployments.reload(session, directory=tmp_path, origin="cli").status == "active"
        version_id = session.scalar(text("SELECT id FROM ruleset_versions"))
        for i in range(N):
            customer = uuid.uuid4()
            session.execute(text("INSERT INTO customers (id) VALUES (:c)"), {"c": customer})
            event_id = session.scalar(
                text(
                    "INSERT INTO events (source, message_id, customer_id, type, name, "
                    " occurred_at, properties, context, evaluated_at) VALUES ('test', :m, :c, "
                    " 'track', 'Product Viewed', :at, '{}', '{}', :at) RETURNING id"
                ),
                {"m": f"m{i}", "c": customer, "at": now - timedelta(hours=1)},
            )
            session.execute(
                text(
                    "INSERT INTO rule_firings (event_id, customer_id, ruleset, rule_id, "
                    " rule_version, version_id, status, facts, actions, due_at) VALUES "
                    " (:e, :c, 'timers', 'later', 1, :v, 'scheduled', '{}', '[]', :due)"
                ),
                {"e": event_id, "c": customer, "v": version_id, "due": now},
            )

    def decide(session: Session) -> list[int]:
        return [1] * flow.run_due(session, limit=25, now=now)  # one mark per rule decided

    decided = in_two_threads(engine, decide)
    assert len(decided[0]) + len(decided[1]) == N  # none decided twice
    assert all(decided), "both timers took part"

    handed = in_two_threads(engine, lambda s: actions.hand_over(s, now=now, limit=25))
    assert len(handed[0]) + len(handed[1]) == N
    assert not set(handed[0]) & set(handed[1])
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM rule_firings GROUP BY status")).all()
        )
        assert statuses == {"fired": N}
        assert conn.scalar(text("SELECT count(*) FROM actions")) == N
    engine.dispose()
