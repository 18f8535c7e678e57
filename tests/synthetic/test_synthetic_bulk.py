"""Bulk mode: a synthetic store written straight into PostgreSQL is what the service
would hold had the same traffic gone through its intake and resolution. The service's
own read paths find it (profiles, computed traits, events, a segment refresh over it);
it equals history mode's store for the same seed; the same seed writes the same rows;
a load is all there or not at all, once per seed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from service.synthetic import behaviour, bulk, catalogue, history, personas, population
from service.synthetic.behaviour import Kind
from service.synthetic.sender import Sender, Target
from service.synthetic.stored import TABLES
from service.synthetic.truth import read
from tests import support
from tests.support import api_process

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules"
# Near the clock, so that segments' windows (the last 30 days, …) hold the store.
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def plan(*, seed: int = 21, customers: int = 200, days: int = 14) -> bulk.Plan:
    return bulk.Plan(seed=seed, customers=customers, start=END - timedelta(days=days), end=END)


@dataclass
class Expected:
    """One customer as the generator made them."""

    user_id: str
    anonymous_id: str
    acts: int
    known: bool
    orders: int
    spent: Decimal
    last_seen: datetime | None


def generated(p: bulk.Plan) -> list[Expected]:
    model = personas.load()
    shop = catalogue.build(model, seed=p.seed)
    out = []
    for index in range(p.customers):
        c = population.draw(model, seed=p.seed, index=index, start=p.start, end=p.end)
        acts = behaviour.acts(model, shop, c, start=p.start, end=p.end)
        orders = [a.total for a in acts if a.kind == Kind.ORDER]
        refunds = [a.total for a in acts if a.kind == Kind.REFUND]
        out.append(
            Expected(
                user_id=c.user_id,
                anonymous_id=c.anonymous_id,
                acts=len(acts),
                known=any(a.known for a in acts),
                orders=len(orders),
                spent=sum(orders, Decimal(0)) - sum(refunds, Decimal(0)),
                last_seen=max((a.at for a in acts), default=None),
            )
        )
    return out


def one(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(support.libpq_url(url)) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


@dataclass
class Store:
    url: str
    plan: bulk.Plan
    loaded: bulk.Loaded
    truth: Path


@pytest.fixture(scope="module")
def store(make_database, tmp_path_factory) -> Store:
    url = make_database("bulk")
    truth = tmp_path_factory.mktemp("bulk") / "truth.jsonl"
    p = plan()
    return Store(url, p, bulk.load(url, p, workers=0, truth=truth), truth)


@pytest.fixture(scope="module")
def service(store: Store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bulk-api")
    setup = api_process.setup(store.url, tmp, rules_dir=SHIPPED_RULES)
    api = setup.start_api(tmp)
    try:
        yield setup, api, setup.key("marketer")
    finally:
        setup.stop()


def test_the_service_finds_each_profile_with_the_generators_orders_spend_and_events(
    store: Store, service
) -> None:
    _setup, api, marketer = service
    expected = generated(store.plan)
    with httpx.Client(base_url=api.base, headers=marketer, timeout=30) as client:
        for customer in expected:
            if not customer.acts:  # no event: no profile, as through the intake
                missing = client.get(f"/v1/profiles/anonymous_id:{customer.anonymous_id}")
                assert missing.status_code == 404
                continue
            ref = (
                f"user_id:{customer.user_id}"
                if customer.known
                else f"anonymous_id:{customer.anonymous_id}"
            )
            response = client.get(f"/v1/profiles/{ref}")
            assert response.status_code == 200, (ref, response.text)
            profile = response.json()
            assert profile["orders_count"] == customer.orders, ref
            spent = sum((Decimal(s["total_spent"]) for s in profile["spend"]), Decimal(0))
            assert spent == customer.spent, ref
            assert datetime.fromisoformat(profile["last_seen_at"]) == customer.last_seen
            kinds = {i["kind"] for i in profile["identities"]}
            assert ("user_id" in kinds) == customer.known
        busiest = max(expected, key=lambda c: c.acts)
        events, cursor = 0, None
        while True:
            page = client.get(
                f"/v1/profiles/user_id:{busiest.user_id}/events",
                params={"limit": 500, **({"cursor": cursor} if cursor else {})},
            ).json()
            events += len(page["events"])
            if not (cursor := page["next_cursor"]):
                break
        assert events == busiest.acts
    acts = sum(c.acts for c in expected)
    assert store.loaded.rows["events"] == acts
    assert one(store.url, "SELECT count(*) FROM events WHERE source = 'synthetic'") == acts
    # Resolved and evaluated: neither the resolvers nor the rules have anything to do.
    assert one(store.url, "SELECT count(*) FROM events WHERE customer_id IS NULL") == 0
    assert one(store.url, "SELECT count(*) FROM events WHERE evaluated_at IS NULL") == 0
    assert store.loaded.rows["customers"] == sum(1 for c in expected if c.acts)
    body = one(
        store.url,
        "SELECT convert_from(body, 'UTF8')::jsonb FROM webhook_deliveries "
        "WHERE source = 'synthetic' AND topic = 'synthetic/bulk'",
    )
    assert (body["seed"], body["rows"]) == (store.plan.seed, store.loaded.rows)
    truth = read(store.truth)
    assert (truth[0]["kind"], truth[0]["mode"]) == ("store", "bulk")
    assert [r["user_id"] for r in truth[1:]] == [c.user_id for c in expected]


ADVANCE = """
from service import db
from service.ruleset.runtime import RUNTIME
from service.segments import service
while True:
    with db.transaction() as session:
        run = service.advance(session, engine=RUNTIME.engine, definitions=RUNTIME.active,
                              batch=50)
    if run is None:
        break
"""


def test_a_segment_refresh_runs_over_the_whole_bulk_store(store: Store, service) -> None:
    setup, api, marketer = service
    started = httpx.post(f"{api.base}/v1/segment-runs", headers=marketer, timeout=30)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    # Advanced as a worker's task does, a committed batch at a time, in a process of
    # its own on the store's database.
    done = subprocess.run(
        [sys.executable, "-c", ADVANCE], env=setup.env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = httpx.get(f"{api.base}/v1/segment-runs/{run_id}", headers=marketer).json()
    assert run["status"] == "done", run
    assert run["done"] == run["total"] == store.loaded.rows["customers"]
    # The rules' first activation (at the API's start) backfilled every segment before
    # it: the store's customers are in them, and the refresh found nothing to change.
    runs = httpx.get(f"{api.base}/v1/segment-runs", headers=marketer).json()
    assert {(r["kind"], r["status"]) for r in runs} == {("backfill", "done"), ("refresh", "done")}
    members = one(store.url, "SELECT count(*) FROM segment_memberships WHERE exited_at IS NULL")
    assert members == sum(r["entered"] - r["exited"] for r in runs) > 0


DIGEST = """
SELECT md5(string_agg(row, E'\\n' ORDER BY row)) FROM (
  SELECT concat_ws('|', 'c', id, traits, trait_times, orders_count, first_order_at,
                   last_order_at, last_seen_at, discount_orders, categories_bought,
                   categories_viewed) AS row FROM customers
  UNION ALL SELECT concat_ws('|', 'i', customer_id, kind, value) FROM identities
  UNION ALL SELECT concat_ws('|', 'e', id, source, message_id, customer_id, type, name,
                             occurred_at, properties, context) FROM events
            WHERE source = 'synthetic' -- a segment refresh adds its own
  UNION ALL SELECT concat_ws('|', 'o', source, order_id, customer_id, status, currency, total,
                             refunded, refunded_cumulative, placed_at, status_at, discounted,
                             categories) FROM orders
  UNION ALL SELECT concat_ws('|', 's', customer_id, currency, orders_count, total_spent)
            FROM customer_spend
  UNION ALL SELECT concat_ws('|', 'v', customer_id, product_id, views, last_viewed_at)
            FROM product_views
  UNION ALL SELECT concat_ws('|', 'm', winner_id, loser_id, outcome, reason, source, message_id)
            FROM profile_merges) AS rows
"""


def test_the_same_seed_loads_the_same_rows_with_any_number_of_workers(
    store: Store, make_database, tmp_path: Path
) -> None:
    again = make_database("bulk_again")
    truth = tmp_path / "truth.jsonl"
    loaded = bulk.load(again, store.plan, workers=2, truth=truth)
    assert loaded.rows == store.loaded.rows
    assert one(again, DIGEST) == one(store.url, DIGEST)
    assert read(truth)[1:] == read(store.truth)[1:]
    other = make_database("bulk_other")
    bulk.load(other, plan(seed=22), workers=0)
    assert one(other, DIGEST) != one(store.url, DIGEST)


def test_a_load_is_all_there_or_not_at_all_and_a_seed_is_loaded_once(
    make_database, tmp_path: Path
) -> None:
    url = make_database("bulk_once")
    small = plan(seed=5, customers=2 * bulk.CHUNK)
    truth = tmp_path / "truth.jsonl"
    written: list[int] = []

    def interrupted(n: int) -> None:
        written.append(n)
        raise KeyboardInterrupt  # Ctrl-C once the first range is written

    with pytest.raises(KeyboardInterrupt):
        bulk.load(url, small, workers=0, truth=truth, progress=interrupted)
    assert written == [bulk.CHUNK]
    for table in ("customers", "events", "identities", "webhook_deliveries"):
        assert one(url, f"SELECT count(*) FROM {table}") == 0, table
    assert list(tmp_path.iterdir()) == []  # no ground truth for a store that is not there
    loaded = bulk.load(url, small, workers=0, truth=truth)
    assert loaded.drawn == small.customers
    assert len(read(truth)) == 1 + small.customers
    with pytest.raises(bulk.AlreadyLoaded, match="seed 5 was bulk-loaded"):
        bulk.load(url, small, workers=0, truth=truth)
    assert one(url, "SELECT count(*) FROM events") == loaded.rows["events"]
    assert len(read(truth)) == 1 + small.customers


# --- bulk mode's store equals history mode's, through the intake and resolution --------------

SNAPSHOT = {
    # Each profile by its anonymous id (every profile holds one); order identities and
    # orders name their source, which differs (api, synthetic).
    "customers": "SELECT k.value, traits, trait_times, orders_count, first_order_at, "
    "last_order_at, last_seen_at, discount_orders, categories_bought, categories_viewed "
    "FROM customers c JOIN keys k ON k.customer_id = c.id",
    "identities": "SELECT k.value, i.kind, split_part(i.value, ':', -1) FROM identities i "
    "JOIN keys k ON k.customer_id = i.customer_id WHERE i.kind <> 'phone'",
    "phones": "SELECT value FROM identities WHERE kind = 'phone'",
    "events": "SELECT k.value, message_id, type, name, occurred_at, properties, context "
    "FROM events e JOIN keys k ON k.customer_id = e.customer_id",
    "orders": "SELECT k.value, order_id, status, currency, total, refunded, "
    "refunded_cumulative, placed_at, status_at, discounted, categories FROM orders o "
    "JOIN keys k ON k.customer_id = o.customer_id",
    "spend": "SELECT k.value, currency, orders_count, total_spent FROM customer_spend s "
    "JOIN keys k ON k.customer_id = s.customer_id",
    "views": "SELECT k.value, product_id, views, last_viewed_at FROM product_views v "
    "JOIN keys k ON k.customer_id = v.customer_id",
    "merges": "SELECT outcome, reason, count(*) FROM profile_merges GROUP BY 1, 2",
}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    keys = "WITH keys AS (SELECT customer_id, value FROM identities WHERE kind = 'anonymous_id') "
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    with psycopg.connect(support.libpq_url(url)) as conn:
        for name, sql in SNAPSHOT.items():
            out[name] = sorted(conn.execute(keys + sql).fetchall(), key=repr)
    return out


def test_bulk_mode_writes_what_history_mode_leaves_after_intake_and_resolution(
    make_database, tmp_path: Path
) -> None:
    p = plan(seed=31, customers=60, days=10)
    sent = make_database("bulk_history")
    setup = api_process.setup(sent, tmp_path, rules_dir=SHIPPED_RULES)
    api = setup.start_api(tmp_path)
    try:
        ingest = setup.key("ingest")["Authorization"].removeprefix("Bearer ")
        model = personas.load()

        async def send() -> Sender:
            sender = Sender(Target(api.base, ingest), concurrency=4)
            await history.run(
                model,
                catalogue.build(model, seed=p.seed),
                sender,
                seed=p.seed,
                customers=range(p.customers),
                start=p.start,
                end=p.end,
            )
            await sender.close()
            return sender

        tally = asyncio.run(send()).tally
    finally:
        setup.stop()
    assert tally.failed == tally.rejected == tally.duplicates == 0
    resolve = "from tests import support; support.resolve_all()"
    resolved = subprocess.run(
        [sys.executable, "-c", resolve], env=setup.env, capture_output=True, text=True
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    loaded = make_database("bulk_loaded")
    bulk.load(loaded, p, workers=0)

    through, written = snapshot(sent), snapshot(loaded)
    assert all(written[name] for name in ("events", "orders", "views", "merges"))
    # Orders with a discount, categories bought and viewed: there to compare.
    assert all(any(row[i] for row in written["customers"]) for i in (7, 8, 9))
    assert os.environ.get("IDENTITY_HASH_KEY")  # the same keys hash on both sides
    for name in SNAPSHOT:
        assert written[name] == through[name], name


# --- the benchmark ------------------------------------------------------------------------------


def test_the_benchmark_runs_in_its_smoke_mode(server_url: str) -> None:
    env = {**os.environ, "BENCH_SMOKE": "1", "BENCH_DATABASE_URL": server_url}
    done = subprocess.run(
        [sys.executable, "-m", "bench.synthetic"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for measure in ("raw COPY", "bulk mode, 0 workers, written", "history mode", "live mode"):
        assert measure in done.stdout, done.stdout


def test_a_load_leaves_table_statistics_for_the_planner(store: Store) -> None:
    with psycopg.connect(bulk.libpq(store.url)) as conn:
        analyzed = dict(
            conn.execute(
                "SELECT relname, last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL"
                " FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                (list(TABLES),),
            ).fetchall()
        )
    assert analyzed == dict.fromkeys(TABLES, True)
