"""The reads that give rules, segments and decisions their profiles, with the marketers'
facts (orders and spend in the last 30/90/365 days summed from the orders at read time;
discount use and categories read from the profile's row) beside the same reads without
them, in the same run on the same data.

    uv run python -m bench.facts_reads     # or: uv run python -m bench.rules --reads
                                           # BENCH_DATABASE_URL, else TEST_DATABASE_URL's
                                           # server, else an embedded PostgreSQL

A fresh database holds BENCH_FACTS_CUSTOMERS (100,000) customers: 40% never ordered,
the others 1 to 12 orders placed over the last two years, and one in a thousand 300
(a heavy buyer: about 150 in the last year, the longest window); 3% of orders cancelled,
30% with a discount, each with categories.

- A batch read: `profiles.facts.read` (rules and segments, one statement per batch) of
  BENCH_FACTS_BATCH (500) customers drawn at random, to their profiles, beside the
  statement and the profiles as they were before these facts; BENCH_FACTS_BATCHES
  batches each, in BENCH_ROUNDS turns.
- A decision's snapshot: the decision endpoint's one statement for one customer (a
  prepared statement on a psycopg connection, as the endpoint's pool runs it), beside
  the statement as it was before; BENCH_FACTS_SNAPSHOTS customers each, in turns. The
  heavy buyers are read on their own too: the worst case of the windows' scan.
"""

from __future__ import annotations

import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bench.ingest import fresh_database
from service import db
from service.decisions.repository import _SNAPSHOT
from service.language.facts import Profile
from service.profiles import facts as profile_facts
from tests import support

CUSTOMERS = int(os.environ.get("BENCH_FACTS_CUSTOMERS", "100000"))
BATCH = int(os.environ.get("BENCH_FACTS_BATCH", "500"))
BATCHES = int(os.environ.get("BENCH_FACTS_BATCHES", "100"))
SNAPSHOTS = int(os.environ.get("BENCH_FACTS_SNAPSHOTS", "5000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CURRENCY = "USD"

# The statements as they were before the marketers' facts: the baseline.
_SEGMENTS = (
    "coalesce((SELECT array_agg(m.segment ORDER BY m.segment) FROM segment_memberships AS m"
    " WHERE m.customer_id = c.id AND m.exited_at IS NULL), '{}') AS segments"
)
BEFORE_READ = text(
    "SELECT c.id, c.orders_count, c.first_order_at, c.last_order_at, c.last_seen_at, "
    "c.rfm_recency, c.rfm_frequency, c.rfm_monetary, c.traits, "
    f"coalesce(s.total_spent, 0) AS total_spent, {_SEGMENTS} "
    "FROM customers AS c LEFT JOIN customer_spend AS s "
    "  ON s.customer_id = c.id AND s.currency = :currency "
    "WHERE c.id = ANY(CAST(:ids AS uuid[]))"
)
BEFORE_SNAPSHOT = (
    "WITH ref AS ("
    "  SELECT %(customer_id)s::uuid AS id WHERE %(customer_id)s::uuid IS NOT NULL"
    "  UNION ALL"
    "  SELECT customer_id FROM identities WHERE kind = %(kind)s AND value = %(value)s"
    "  LIMIT 1"
    "), target AS ("
    "  SELECT coalesce(c.merged_into_id, c.id) AS id FROM customers AS c JOIN ref ON c.id = ref.id"
    ") "
    "SELECT d.deployment_id, c.id, c.orders_count, c.first_order_at, c.last_order_at,"
    " c.last_seen_at, c.rfm_recency, c.rfm_frequency, c.rfm_monetary, c.traits,"
    f" coalesce(s.total_spent, 0) AS total_spent, {_SEGMENTS},"
    " coalesce((SELECT json_agg(json_build_object('id', x.id, 'kind', x.kind, 'name', x.name,"
    "   'placement', x.placement, 'params', x.params, 'expires_at', x.expires_at)"
    "   ORDER BY x.created_at DESC, x.id DESC) FROM inbox_items AS x"
    "   WHERE x.customer_id = c.id AND x.used_at IS NULL AND x.expires_at > now()"
    "   AND x.placement IS NOT NULL), '[]') AS inbox "
    "FROM (SELECT max(id) AS deployment_id FROM rule_deployments WHERE status = 'active') AS d"
    " LEFT JOIN target AS t ON true"
    " LEFT JOIN customers AS c ON c.id = t.id"
    " LEFT JOIN customer_spend AS s ON s.customer_id = c.id AND s.currency = %(currency)s"
)


def before_profile(row: Any) -> Profile:
    """A profile from a row of BEFORE_READ, as `profile_from_row` made it then."""
    traits = dict(row.traits or {})
    consent = traits.get("consent")
    return Profile(
        customer_id=row.id,
        orders_count=row.orders_count,
        total_spent=row.total_spent,
        first_order_at=row.first_order_at,
        last_order_at=row.last_order_at,
        last_seen_at=row.last_seen_at,
        rfm=(row.rfm_recency, row.rfm_frequency, row.rfm_monetary),
        traits=traits,
        segments=tuple(row.segments),
        consent={k: v for k, v in consent.items() if isinstance(v, bool)}
        if isinstance(consent, dict)
        else {},
    )


def seed(libpq: str, customers: int) -> dict[str, int]:
    """The customers, their orders and spend; how many of each."""
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE seed AS SELECT i, gen_random_uuid() AS id, "
            " CASE WHEN mod(i, 1000) = 999 THEN 300 WHEN mod(i, 100) < 40 THEN 0 "
            "  ELSE 1 + floor(random() * 12)::int END AS orders "
            "FROM generate_series(0, %s - 1) AS i",
            (customers,),
        )
        conn.execute(
            "INSERT INTO customers (id, orders_count, traits, categories_viewed) "
            "SELECT id, orders, jsonb_build_object('first_name', 'Sam', "
            " 'consent', jsonb_build_object('marketing', mod(i, 10) < 7)), "
            " (ARRAY['Books', 'Games', 'Toys'])[1:mod(i, 4)] FROM seed"
        )
        conn.execute(
            "INSERT INTO orders (source, order_id, customer_id, status, currency, total, "
            " placed_at, status_at, discounted, categories) "
            "SELECT 'bench', i || '-' || g, id, "
            " CASE WHEN random() < 0.03 THEN 'cancelled' ELSE 'completed' END, 'USD', "
            " round((15 + random() * 250)::numeric, 2), at, at, random() < 0.3, "
            " ARRAY[(ARRAY['Books', 'Games', 'Toys', 'Garden'])[1 + mod(i + g, 4)]] "
            "FROM (SELECT s.i, s.id, g, now() - random() * interval '730 days' AS at "
            " FROM seed AS s CROSS JOIN LATERAL generate_series(1, s.orders) AS g) AS o"
        )
        conn.execute(
            "INSERT INTO customer_spend (customer_id, currency, orders_count, total_spent) "
            "SELECT customer_id, currency, count(*), sum(total) FROM orders "
            "WHERE status <> 'cancelled' GROUP BY customer_id, currency"
        )
        conn.execute(
            "UPDATE customers AS c SET first_order_at = o.first_at, last_order_at = o.last_at, "
            " discount_orders = o.discounted, categories_bought = o.categories FROM ("
            " SELECT customer_id, min(placed_at) AS first_at, max(placed_at) AS last_at, "
            "  count(*) FILTER (WHERE discounted) AS discounted, "
            "  array_agg(DISTINCT categories[1] ORDER BY categories[1]) AS categories "
            " FROM orders WHERE status <> 'cancelled' GROUP BY customer_id) AS o "
            "WHERE c.id = o.customer_id"
        )
        conn.execute("VACUUM ANALYZE")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders)"
        ).fetchone()
    assert counts is not None
    return {"customers": counts[0], "orders": counts[1]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def alternate(ways: dict[str, Callable[[int], float]], count: int) -> dict[str, list[float]]:
    """Each way `count` times, in ROUNDS turns taken in order, so that a slow spell of the
    machine falls on every way alike: seconds of each call."""
    took: dict[str, list[float]] = {name: [] for name in ways}
    for turn in range(ROUNDS):
        for name, run in ways.items():
            for i in range(count * turn // ROUNDS, count * (turn + 1) // ROUNDS):
                took[name].append(run(i))
    return took


def batch_reads(url: str, ids: list[uuid.UUID]) -> dict[str, list[float]]:
    engine = create_engine(url)
    rng = random.Random(1)
    batches = [rng.sample(ids, BATCH) for _ in range(BATCHES)]
    now = datetime.now(UTC)
    try:
        with Session(engine) as session:
            for batch in batches[:5]:  # warm the caches and the plans
                profile_facts.read(session, batch, currency=CURRENCY, now=now)
                session.execute(BEFORE_READ, {"ids": [str(c) for c in batch], "currency": CURRENCY})

            def before(i: int) -> float:
                began = time.perf_counter()
                params = {"ids": [str(c) for c in batches[i]], "currency": CURRENCY}
                found = {r.id: before_profile(r) for r in session.execute(BEFORE_READ, params)}
                assert len(found) == BATCH
                return time.perf_counter() - began

            def after(i: int) -> float:
                began = time.perf_counter()
                found = profile_facts.read(session, batches[i], currency=CURRENCY, now=now)
                assert len(found) == BATCH
                return time.perf_counter() - began

            return alternate({"before": before, "with the facts": after}, BATCHES)
    finally:
        engine.dispose()


def snapshots(libpq: str, ids: list[uuid.UUID]) -> dict[str, list[float]]:
    rng = random.Random(2)
    chosen = [rng.choice(ids) for _ in range(SNAPSHOTS)]
    with psycopg.connect(libpq, autocommit=True) as conn:

        def reader(statement: str, customers: list[uuid.UUID]) -> Callable[[int], float]:
            def run(i: int) -> float:
                params: dict[str, Any] = {
                    "customer_id": customers[i % len(customers)],
                    "kind": None,
                    "value": None,
                    "currency": CURRENCY,
                }
                began = time.perf_counter()
                row = conn.execute(statement, params, prepare=True).fetchone()
                assert row is not None
                return time.perf_counter() - began

            return run

        heavy = [
            row[0]
            for row in conn.execute(
                "SELECT customer_id FROM orders GROUP BY 1 HAVING count(*) > 100"
            )
        ]
        ways = {
            "before": reader(BEFORE_SNAPSHOT, chosen),
            "with the facts": reader(_SNAPSHOT, chosen),
            "before, heavy buyers": reader(BEFORE_SNAPSHOT, heavy),
            "with the facts, heavy buyers": reader(_SNAPSHOT, heavy),
        }
        for run in ways.values():
            for i in range(200):
                run(i)
        return alternate(ways, SNAPSHOTS)


def report(title: str, took: dict[str, list[float]], *, unit: str, scale: float) -> None:
    """Mean, median and 99th percentile of each way; a way with the facts beside the
    same way before them."""
    print(f"\n{title}")
    print(f"{'':<32}{'mean ' + unit:>12}{'p50 ' + unit:>12}{'p99 ' + unit:>12}{'vs before':>11}")
    for name, values in took.items():
        mean = statistics.fmean(values)
        line = f"{name:<32}{mean * scale:>12.2f}{pct(values, 0.5) * scale:>12.2f}"
        line += f"{pct(values, 0.99) * scale:>12.2f}"
        before = took.get(name.replace("with the facts", "before"))
        if before is not None and before is not values:
            line += f"{mean / statistics.fmean(before):>11.2f}"
        print(line)


def main() -> None:
    with fresh_database("facts") as url:
        db.upgrade(url)
        libpq = support.libpq_url(url)
        began = time.perf_counter()
        counts = seed(libpq, CUSTOMERS)
        print(
            f"\nprofile reads: {counts['customers']:,} customers, {counts['orders']:,} orders "
            f"(seeded in {time.perf_counter() - began:.0f} s)"
        )
        with psycopg.connect(libpq) as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM customers")]
        took = batch_reads(url, ids)
        report(
            f"a batch read of {BATCH} customers (rules, segments), {BATCHES} batches each",
            took,
            unit="ms",
            scale=1e3,
        )
        per = statistics.fmean(took["with the facts"]) / BATCH * 1e6
        print(f"with the facts: {per:.1f} µs a customer")
        report(
            f"a decision's snapshot of one customer, {SNAPSHOTS} reads each",
            snapshots(libpq, ids),
            unit="µs",
            scale=1e6,
        )


if __name__ == "__main__":
    main()
