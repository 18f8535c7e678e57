"""Segments: a full pass over every customer, and how soon an event puts its customer in
a segment, beside the reads a pass needs and the pipeline steps before membership, all
measured in the same run.

    uv run python -m bench.segments [--customers N]   # BENCH_DATABASE_URL, else
                                                      # TEST_DATABASE_URL's server, else
                                                      # an embedded PostgreSQL

A fresh database holds N customers (100,000): 40% never ordered, 10% first ordered in
the last 30 days, 25% ordered in the last 90 days, 25% not since; about 6% spent 500
or more; and about 5 events each over the last 9 days (views, adds to cart,
checkouts, orders), already resolved and evaluated. The shipped rule files and
segments (`rules/`) are then activated in this process, which starts a backfill of
every segment: the first full pass.

- Full passes, in this process, `service.segments.service.advance` a committed batch
  of SEGMENT_BATCH_SIZE (1,000) customers at a time, as the worker's task does: the
  backfill (every member enters: a period and a `Segment Entered` event each), then a
  refresh in the steady state (few changes), with where the time went. Beside them,
  the reads a pass needs (customers, profiles, window counts over events, open
  memberships) as single queries over every customer. The steady refresh runs twice:
  with the planner's statistics as the backfill left them (taken by the seed's
  ANALYZE, before any membership), then after ANALYZE, as autovacuum would leave
  them. Target: a full refresh of 100,000 customers within 60 s.
- The same refresh through a real worker (`personalize worker`, Celery on RabbitMQ
  when BROKER_URL is unset and 127.0.0.1:5672 answers): from the commit that starts
  it to the run's `done`, as seen from here.
- Membership latency: the API (`personalize api`) and the worker as processes;
  BENCH_RATE (10) `Product Added` events a second for BENCH_SECONDS (30), one per
  request, each for a new user; from the 2xx (the event is committed before it) until
  an open `high_intent_at_risk` period is visible, polled every BENCH_POLL_MS (10) ms
  for every event waiting at once; p50, p99, max. Beside it, the steps before: the
  event resolved onto a profile (`customer_id` set) and evaluated (`evaluated_at`,
  committed in the same transaction as the membership, unless a refresh took the new
  customer first). Once with the worker otherwise idle, once while refreshes run on
  it one after another. Target: p99 within 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.actions import pct
from bench.ingest import fresh_database
from tests import support

CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
RATE = float(os.environ.get("BENCH_RATE", "10"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
POLL_MS = float(os.environ.get("BENCH_POLL_MS", "10"))
# Rules evaluating the backfill's `Segment Entered` events get this long; the rest are
# marked evaluated, so the latency runs do not start behind a backlog.
DRAIN_S = float(os.environ.get("BENCH_DRAIN_S", "180"))
RULES = Path(__file__).parents[1] / "rules"
SEGMENT = "high_intent_at_risk"  # what one `Product Added` puts a new customer in
REFRESH_TARGET_S = 60.0  # for 100,000 customers
LATENCY_TARGET_MS = 1000.0  # p99


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.segments", description=__doc__)
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    parser.add_argument("--rate", type=float, default=RATE, help="events/s in latency runs")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of each latency run")
    args = parser.parse_args()
    with fresh_database("segments") as url:
        run(url, customers=args.customers, rate=args.rate, seconds=args.seconds)


def service_env(url: str, queue: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=url,
        PORT=str(port),
        API_WORKERS="1",
        RULES_DIR=str(RULES),
        RULES_WATCH="false",
        BROKER_QUEUE=queue,
        LOG_LEVEL="warning",
        LOG_FORMAT="console",
        IDENTITY_HASH_KEY="bench",
        PII_ENCRYPTION_KEYS="rQ5G9zP4m1YyZ7f3c2kq0bq6rX9d8JzF0pTj1uVwXy4=",
    )
    if not env.get("BROKER_URL") and support.port_open("127.0.0.1", 5672):
        env["BROKER_URL"] = "amqp://guest:guest@127.0.0.1:5672//"
    return env


def run(url: str, *, customers: int, rate: float, seconds: float) -> None:
    from service import db

    db.upgrade(url)
    env = service_env(url, f"bench-segments-{uuid.uuid4().hex[:8]}", support.free_port())
    # This process runs the passes itself, with the same settings as the processes.
    os.environ.update(env)
    _reset_caches()
    from service.logging import configure

    configure(level="warning", fmt="console")
    broker = env.get("BROKER_URL", "").split("@")[-1] or "PostgreSQL (kombu SQLAlchemy transport)"
    print(f"{customers:,} customers on {os.cpu_count()} cores, broker: {broker}", flush=True)

    libpq = support.libpq_url(url)
    started = time.perf_counter()
    events = seed(libpq, customers)
    with psycopg.connect(libpq) as conn:
        autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]  # type: ignore[index]
    print(
        f"seeded {customers:,} customers and {events:,} events "
        f"in {time.perf_counter() - started:.1f} s (autovacuum {autovacuum} on this server)",
        flush=True,
    )
    figures: dict[str, Any] = {"customers": customers}
    try:
        in_process(libpq, figures)
        with processes(env) as (base, headers):
            through_processes(libpq, base, headers, figures, rate=rate, seconds=seconds)
    finally:
        _delete_queue(env)
    summary(figures)


def _reset_caches() -> None:
    from service import db
    from service.settings import get_settings
    from service.worker import get_celery

    get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()
    get_celery.cache_clear()


# --- the data ------------------------------------------------------------------------------


def seed(libpq: str, customers: int) -> int:
    """The customers, their spend and identities, and their events; returns how many
    events."""
    from service.settings import get_settings

    currency = get_settings().shop_currency
    with psycopg.connect(libpq, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        conn.execute(
            "CREATE TEMP TABLE seed AS SELECT *, "
            " CASE kind WHEN 'none' THEN 0 WHEN 'new' THEN 1 + mod(i, 2) ELSE 2 + mod(i, 6) END "
            "  AS orders, "
            " CASE kind WHEN 'new' THEN %(now)s - random() * interval '28 days' "
            "  WHEN 'active' THEN %(now)s - interval '100 days' - random() * interval '600 days' "
            "  WHEN 'lapsed' THEN %(now)s - interval '200 days' - random() * interval '600 days' "
            " END AS first_at, "
            " CASE kind WHEN 'active' THEN %(now)s - random() * interval '85 days' "
            "  WHEN 'lapsed' THEN %(now)s - interval '92 days' - random() * interval '300 days' "
            " END AS last_at "
            "FROM (SELECT i, gen_random_uuid() AS id, "
            "  CASE WHEN mod(i, 100) < 40 THEN 'none' WHEN mod(i, 100) < 50 THEN 'new' "
            "   WHEN mod(i, 100) < 75 THEN 'active' ELSE 'lapsed' END AS kind, "
            "  floor(-ln(1 - random()) * 5.5)::int AS n_events "
            " FROM generate_series(0, %(n)s - 1) AS i) AS s",
            {"now": now, "n": customers},
        )
        conn.execute(
            "ALTER TABLE seed ADD COLUMN spent numeric; "
            "UPDATE seed SET spent = CASE WHEN orders = 0 THEN NULL "
            " WHEN mod(i, 10) = 3 THEN round((500 + random() * 2500)::numeric, 2) "
            " ELSE round((orders * (15 + random() * 50))::numeric, 2) END"
        )
        conn.execute(
            "INSERT INTO customers (id, created_at, orders_count, first_order_at, "
            " last_order_at, last_seen_at, rfm_recency, rfm_frequency, rfm_monetary, "
            " rfm_computed_at, traits) "
            "SELECT id, coalesce(first_at, %(now)s - random() * interval '400 days'), orders, "
            " first_at, coalesce(last_at, first_at), %(now)s - random() * interval '9 days', "
            " CASE WHEN orders > 0 THEN CASE kind WHEN 'lapsed' THEN 1 ELSE 4 END END, "
            " CASE WHEN orders > 0 THEN least(5, orders) END, "
            " CASE WHEN orders > 0 THEN CASE WHEN spent >= 500 THEN 5 ELSE 1 + mod(i, 4) END END, "
            " CASE WHEN orders > 0 THEN %(now)s END, "
            " jsonb_build_object('first_name', 'Sam', "
            "  'consent', jsonb_build_object('marketing', mod(i, 10) < 7)) "
            "FROM seed",
            {"now": now},
        )
        conn.execute(
            "INSERT INTO customer_spend (customer_id, currency, orders_count, total_spent) "
            "SELECT id, %s, orders, spent FROM seed WHERE orders > 0",
            (currency,),
        )
        conn.execute(
            "INSERT INTO identities (customer_id, kind, value) "
            "SELECT id, 'user_id', 'u' || i FROM seed"
        )
        conn.execute(
            "INSERT INTO events (source, message_id, customer_id, type, name, occurred_at, "
            " received_at, properties, context, evaluated_at) "
            "SELECT 'bench', 'seed-' || i || '-' || g, id, 'track', "
            " CASE WHEN r < 0.70 THEN 'Product Viewed' WHEN r < 0.88 THEN 'Product Added' "
            "  WHEN r < 0.95 THEN 'Checkout Started' ELSE 'Order Completed' END, "
            " at, at, jsonb_build_object('product_id', 'p' || mod(i * 7 + g, 500)), '{}', at "
            "FROM (SELECT s.i, s.id, g, random() AS r, "
            "  %(now)s - random() * interval '9 days' AS at "
            " FROM seed AS s CROSS JOIN LATERAL generate_series(1, s.n_events) AS g) AS e",
            {"now": now},
        )
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
        conn.execute("VACUUM ANALYZE")
    return int(events)


# --- full passes in this process --------------------------------------------------------------


@dataclass
class Pass:
    seconds: float = 0.0
    batches: int = 0
    done: int = 0
    entered: int = 0
    exited: int = 0
    parts: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


# What `update` spends its time on, by the functions it calls: (module, name, label).
PARTS = [
    ("service.segments.repository", "claim_run", "claim the run"),
    ("service.profiles.repository", "customers_after", "next customers (by id)"),
    ("service.profiles.facts", "lock_for_evaluation", "customer locks (advisory)"),
    ("service.rules.repository", "profiles", "profiles (select)"),
    ("service.events.history", "window_counts", "window counts (events)"),
    ("service.segments.repository", "open_memberships", "open memberships (select)"),
    ("service.language.facts", "Profile.facts", "profile facts (Python)"),
    ("service.language.segments", "CompiledSegments.match", "match (durable-rules)"),
    ("service.segments.repository", "enter", "write: periods opened"),
    ("service.segments.repository", "leave", "write: periods closed"),
    ("service.segments.repository", "add_events", "write: Segment Entered/Left events"),
]


@contextmanager
def timed_parts(parts: defaultdict[str, float]) -> Iterator[None]:
    """Add the time spent in each of PARTS to `parts` while inside."""
    import importlib

    restore: list[tuple[Any, str, Any]] = []
    for module_name, name, label in PARTS:
        owner: Any = importlib.import_module(module_name)
        *path, attr = name.split(".")
        for step in path:
            owner = getattr(owner, step)
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)

        def timed(*args: Any, _original: Any = original, _label: str = label, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                parts[_label] += time.perf_counter() - started

        setattr(owner, attr, timed)
        restore.append((owner, attr, original))
    try:
        yield
    finally:
        for owner, attr, original in restore:
            setattr(owner, attr, original)


def batch_size() -> int:
    from service.settings import get_settings

    return get_settings().segment_batch_size


def drive() -> Pass:
    """Advance the running run a committed batch at a time until it is done, as the
    worker's task does, timing each part of a batch."""
    from service import db
    from service.ruleset.runtime import RUNTIME
    from service.segments import service

    batch = batch_size()
    result = Pass()
    with timed_parts(result.parts):
        started = time.perf_counter()
        while True:
            with db.transaction() as session:
                run = service.advance(
                    session, engine=RUNTIME.engine, definitions=RUNTIME.active, batch=batch
                )
                body_done = time.perf_counter()
            result.parts["commit"] += time.perf_counter() - body_done
            if run is None:
                break
            result.batches += 1
            result.done, result.entered, result.exited = run.done, run.entered, run.exited
            if run.status != "running":
                break
        result.seconds = time.perf_counter() - started
    return result


def in_process(libpq: str, figures: dict[str, Any]) -> None:
    from service import db
    from service.rules import deployments
    from service.ruleset.runtime import RUNTIME
    from service.segments import repository as segment_runs

    started = time.perf_counter()
    with db.transaction() as session:
        outcome = deployments.reload(session, directory=RULES, origin="cli")
        running = segment_runs.running(session, kind="backfill")
    if outcome.status != "active" or not running:
        raise SystemExit(f"rules not activated ({outcome}), or no backfill started")
    with db.transaction() as session:
        active = RUNTIME.active(session)  # compiled once, before the timing
    assert active.segments is not None
    print(
        f"rules and {len(active.segments.segments)} segments activated in "
        f"{time.perf_counter() - started:.2f} s; backfill run {running[0].id} started",
        flush=True,
    )

    backfill = drive()
    figures["backfill"] = backfill
    with psycopg.connect(libpq) as conn:
        sizes: dict[str, int] = dict(
            conn.execute(
                "SELECT segment, count(*) FROM segment_memberships WHERE exited_at IS NULL "
                "GROUP BY segment ORDER BY segment"
            ).fetchall()
        )
    print(
        "segment sizes: " + ", ".join(f"{name} {sizes.get(name, 0):,}" for name in sorted(sizes)),
        flush=True,
    )
    empty = sorted(set(active.segments.segments) - {n for n, c in sizes.items() if c})
    if empty:
        print(f"(no members: {', '.join(empty)})")
    figures["sizes"] = sizes

    figures["drain"] = drain_announcements(libpq)

    # A refresh with the planner's statistics as the backfill left them (the tables were
    # analyzed when the seed was: no memberships then), then the same after ANALYZE,
    # which autovacuum does on its own within a minute or so where it is on.
    start_refresh()
    stale = drive()
    figures["refresh_stale"] = stale
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    reads = min(
        (raw_reads(libpq, active.segments) for _ in range(2)),
        key=lambda r: sum(r.values()),
    )
    figures["reads"] = reads
    start_refresh()
    refresh = drive()
    figures["refresh"] = refresh

    passes = {
        "backfill (every member enters)": backfill,
        "refresh, statistics as the backfill left": stale,
        "refresh, after ANALYZE": refresh,
    }
    print(f"\nfull passes in this process, {refresh.batches} batches of {batch_size():,}")
    print(f"{'':<44}{'seconds':>9}{'cust/s':>9}{'entered':>9}{'exited':>8}{'vs reads':>9}")
    total_reads = sum(reads.values())
    print(f"{'reads a pass needs, one query each':<44}{total_reads:>9.2f}{'':>35}{1.0:>9.2f}")
    for label, p in passes.items():
        print(
            f"{label:<44}{p.seconds:>9.2f}{p.rate:>9,.0f}{p.entered:>9,}{p.exited:>8,}"
            f"{p.seconds / total_reads:>9.1f}"
        )
    print("\nreads over every customer at once, one query each (seconds)")
    for label, seconds in reads.items():
        print(f"  {label:<42}{seconds:>8.2f}")
    print("\nwhere a pass's time went (seconds)")
    print(f"  {'':<42}{'backfill':>9}{'stale':>9}{'analyzed':>9}")
    labels = [label for _, _, label in PARTS] + ["commit"]
    for label in labels:
        print(f"  {label:<42}" + "".join(f"{x.parts[label]:>9.2f}" for x in passes.values()))
    print(
        f"  {'the rest (Python in update, ORM, run row)':<42}"
        + "".join(f"{x.seconds - sum(x.parts[k] for k in labels):>9.2f}" for x in passes.values())
    )
    drain = figures["drain"]
    print(
        f"\nrules evaluating the backfill's {drain['events']:,} Segment Entered events: "
        f"{drain['evaluated']:,} in {drain['seconds']:.1f} s "
        f"({drain['evaluated'] / max(drain['seconds'], 1e-9):,.0f}/s)"
        + (f"; {drain['skipped']:,} more marked evaluated unread" if drain["skipped"] else ""),
        flush=True,
    )


def drain_announcements(libpq: str) -> dict[str, Any]:
    """Evaluate the events the backfill added (rules may trigger on them), as the
    workers would, for up to DRAIN_S; mark the rest evaluated."""
    from service import db
    from service.flow import evaluate_pending

    with psycopg.connect(libpq, autocommit=True) as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM events WHERE customer_id IS NOT NULL AND evaluated_at IS NULL"
        ).fetchone()[0]  # type: ignore[index]
        started, evaluated = time.perf_counter(), 0
        while time.perf_counter() - started < DRAIN_S:
            with db.transaction() as session:
                done = evaluate_pending(session, limit=500)
            evaluated += done
            if done == 0:
                break
        seconds = time.perf_counter() - started
        skipped = conn.execute(
            "UPDATE events SET evaluated_at = now() "
            "WHERE customer_id IS NOT NULL AND evaluated_at IS NULL"
        ).rowcount
    return {"events": int(waiting), "evaluated": evaluated, "seconds": seconds, "skipped": skipped}


def raw_reads(libpq: str, compiled: Any) -> dict[str, float]:
    """The reads of a pass, each as one query over every customer, every row fetched:
    seconds per query."""
    from service.language.segments import window_bounds
    from service.profiles.facts import PROFILE_SELECT, profile_joins
    from service.settings import get_settings

    now = datetime.now(UTC)
    bounds = window_bounds(compiled.windows, now=now)
    columns, params = [], []
    for _key, type_, name, since in bounds:
        condition = "type = %s AND occurred_at >= %s" + (" AND name = %s" if name else "")
        columns.append(f"count(*) FILTER (WHERE {condition})")
        params += [type_, since, *([name] if name else [])]
    queries: dict[str, tuple[str, Any]] = {
        "customers in id order": (
            "SELECT id FROM customers WHERE merged_into_id IS NULL ORDER BY id",
            [],
        ),
        "profiles (with spend, order windows and segments)": (
            f"SELECT {PROFILE_SELECT} FROM customers AS c"
            + profile_joins(now="now()", currency="%(currency)s")
            + " WHERE c.merged_into_id IS NULL",
            {"currency": get_settings().shop_currency},
        ),
        "window counts, grouped by customer": (
            f"SELECT customer_id, {', '.join(columns)} FROM events "
            "WHERE customer_id IS NOT NULL AND occurred_at >= %s AND occurred_at <= %s "
            "GROUP BY customer_id",
            [*params, min(b[3] for b in bounds), now],
        ),
        "open memberships": (
            "SELECT customer_id, segment, id, added_by FROM segment_memberships "
            "WHERE exited_at IS NULL",
            [],
        ),
    }
    seconds = {}
    with psycopg.connect(libpq) as conn:
        for label, (query, args) in queries.items():
            started = time.perf_counter()
            conn.execute(query, args).fetchall()
            seconds[label] = time.perf_counter() - started
    return seconds


# --- the API and a worker as processes -------------------------------------------------------


@contextmanager
def processes(env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The API and a Celery worker, stopped on the way out."""
    headers = {
        **support.cli_key(env, "ingest", name="bench"),
        "Content-Type": "application/json",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,  # the worker's banner
        )
        for args in (["api"], ["worker", "--concurrency=2"])
    ]
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        support.wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, timeout=60)
        yield base, headers
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _delete_queue(env: dict[str, str]) -> None:
    """The run's own queue on a shared RabbitMQ, with what nudges left in it."""
    if not env.get("BROKER_URL", "").startswith("amqp"):
        return
    from service.worker import get_celery

    try:
        with get_celery().connection_for_write() as conn:
            conn.default_channel.queue_delete(env["BROKER_QUEUE"])  # type: ignore[attr-defined]
    except Exception as exc:  # the figures are printed either way
        print(f"(queue {env['BROKER_QUEUE']} not deleted: {exc!r})")


def through_processes(
    libpq: str,
    base: str,
    headers: dict[str, str],
    figures: dict[str, Any],
    *,
    rate: float,
    seconds: float,
) -> None:
    with psycopg.connect(libpq, autocommit=True) as conn:
        # Warm up: the API's and both worker processes' connections and compiled rules.
        warm = probe(base, headers, libpq, rate=5, count=20, tag="warm", timeout=120)
        if len(warm.member) < 20:
            raise SystemExit(f"warm-up: {len(warm.member)} of 20 events made a member")

        figures["worker_refresh"] = worker_refresh(conn)
        print(f"\nrefresh through the worker: {figures['worker_refresh']:.2f} s", flush=True)

        quiet = probe(base, headers, libpq, rate=rate, count=int(rate * seconds), tag="quiet")
        figures["quiet"] = quiet
        print_latency(conn, quiet, f"membership latency, worker otherwise idle, {rate:.0f}/s")

        # The same while refreshes run on the same worker, one after another.
        stop = threading.Event()
        refreshes: list[float] = []
        runner = threading.Thread(target=refresh_until, args=(libpq, stop, refreshes))
        runner.start()
        try:
            busy = probe(base, headers, libpq, rate=rate, count=int(rate * seconds), tag="busy")
        finally:
            stop.set()
            runner.join()
        figures["busy"] = busy
        figures["busy_refresh"] = refreshes
        print_latency(
            conn,
            busy,
            f"membership latency during refreshes ({len(refreshes)} one after another, "
            f"{min(refreshes, default=0):.1f} to {max(refreshes, default=0):.1f} s each), "
            f"{rate:.0f}/s",
        )

        # The same while a backfill moves a quarter of the customers into a segment:
        # each a period and a Segment Entered event, which rules then evaluate.
        started = time.perf_counter()
        run_id, moved = start_backfill(conn, "lapsed_90d")
        took: list[float] = []
        waiter = threading.Thread(target=lambda: took.append(wait_run_new(libpq, run_id, started)))
        waiter.start()
        backfill = probe(base, headers, libpq, rate=rate, count=int(rate * seconds), tag="fill")
        waiter.join()
        backfill_s = took[0] if took else float("nan")
        backlog = conn.execute(
            "SELECT count(*) FROM events WHERE source = 'segments' AND evaluated_at IS NULL"
        ).fetchone()[0]  # type: ignore[index]
        figures["backfill_probe"] = backfill
        print_latency(
            conn,
            backfill,
            f"membership latency during a backfill through the worker ({moved:,} customers "
            f"enter lapsed_90d; done in {backfill_s:.1f} s; {backlog:,} of its Segment "
            f"Entered events still waiting for rules at its end), {rate:.0f}/s",
        )


def refresh_until(libpq: str, stop: threading.Event, seconds: list[float]) -> None:
    """Refreshes through the worker one after another until `stop` (the last one is
    waited for); the seconds each took."""
    with psycopg.connect(libpq, autocommit=True) as conn:
        while not stop.is_set():
            started = time.perf_counter()
            seconds.append(wait_run(conn, start_refresh(), started))


def start_refresh() -> int:
    from service import db
    from service.ruleset.runtime import RUNTIME
    from service.segments import service

    with db.transaction() as session:
        active = RUNTIME.active(session)
        assert active.segments is not None
        run = service.start_refresh(session, segments=active.segments.segments)
    if run is None:
        raise SystemExit("a refresh is already running")
    return run.id  # its nudge goes to the worker once committed


def wait_run(conn: psycopg.Connection[Any], run_id: int, started: float) -> float:
    """Seconds from `started` until the run is done, polled every 50 ms."""
    while True:
        status = conn.execute("SELECT status FROM segment_runs WHERE id = %s", (run_id,)).fetchone()
        if status and status[0] != "running":
            return time.perf_counter() - started
        if time.perf_counter() - started > 900:
            raise SystemExit(f"segment run {run_id} not done after 900 s")
        time.sleep(0.05)


def start_backfill(conn: psycopg.Connection[Any], segment: str) -> tuple[int, int]:
    """Empty `segment` and start a backfill of it, as a changed definition would: every
    member enters again. Returns the run's id and how many will enter."""
    from service import db
    from service.segments import service

    moved = conn.execute(
        "UPDATE segment_memberships SET exited_at = now(), exited_by = 'bench' "
        "WHERE segment = %s AND exited_at IS NULL",
        (segment,),
    ).rowcount
    with db.transaction() as session:
        run = service.definitions_changed(session, before={segment: "old"}, after={segment: "new"})
    assert run is not None
    return run.id, moved


def wait_run_new(libpq: str, run_id: int, started: float) -> float:
    """`wait_run` on a connection of its own (for a thread)."""
    with psycopg.connect(libpq, autocommit=True) as conn:
        return wait_run(conn, run_id, started)


def worker_refresh(conn: psycopg.Connection[Any]) -> float:
    started = time.perf_counter()
    return wait_run(conn, start_refresh(), started)


# --- membership latency ----------------------------------------------------------------------


@dataclass
class Probes:
    sent: dict[str, float] = field(default_factory=dict)  # message id → 2xx
    resolved: dict[str, float] = field(default_factory=dict)  # seconds after the 2xx
    evaluated: dict[str, float] = field(default_factory=dict)
    member: dict[str, float] = field(default_factory=dict)
    send_rate: float = 0.0


def probe(
    base: str,
    headers: dict[str, str],
    libpq: str,
    *,
    rate: float,
    count: int,
    tag: str,
    timeout: float = 60,
) -> Probes:
    """`count` single `Product Added` events for new users, `rate` a second (open loop),
    each followed until its customer is an open member of SEGMENT."""
    result = Probes()
    lock = threading.Lock()
    stop = threading.Event()
    poller = threading.Thread(target=poll, args=(libpq, result, lock, stop))
    poller.start()
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            started = time.perf_counter()
            for n in range(count):
                delay = started + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                message_id = f"{tag}-{n}-{uuid.uuid4().hex}"
                event = {
                    "type": "track",
                    "event": "Product Added",
                    "userId": f"bench-{message_id}",
                    "messageId": message_id,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "properties": {"product_id": f"p{n % 500}", "cart_id": f"c-{message_id}"},
                }
                response = client.post("/v1/events", content=json.dumps({"batch": [event]}))
                answered = time.perf_counter()
                response.raise_for_status()
                if response.json().get("accepted") != 1:
                    raise SystemExit(f"event not accepted: {response.text}")
                with lock:
                    result.sent[message_id] = answered
            result.send_rate = count / (time.perf_counter() - started)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with lock:
                if len(result.member) == len(result.evaluated) == len(result.sent):
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        poller.join()
    return result


def poll(libpq: str, result: Probes, lock: threading.Lock, stop: threading.Event) -> None:
    """Every POLL_MS, one query for every event still waiting: when each was first seen
    resolved, evaluated, and its customer a member (which a refresh may make before
    the event is evaluated)."""
    query = (
        "SELECT e.message_id, e.customer_id IS NOT NULL, e.evaluated_at IS NOT NULL, "
        " EXISTS (SELECT 1 FROM segment_memberships AS m WHERE m.customer_id = e.customer_id "
        "  AND m.segment = %s AND m.exited_at IS NULL) "
        "FROM events AS e WHERE e.source = 'api' AND e.message_id = ANY(%s)"
    )
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("SET application_name = 'bench.segments poller'")
        while not stop.is_set():
            with lock:
                waiting = {
                    m: t
                    for m, t in result.sent.items()
                    if m not in result.member or m not in result.evaluated
                }
            if waiting:
                rows = conn.execute(query, (SEGMENT, list(waiting))).fetchall()
                seen = time.perf_counter()
                with lock:
                    for message_id, resolved, evaluated, member in rows:
                        after = seen - waiting[message_id]
                        for flag, stage in (
                            (resolved, result.resolved),
                            (evaluated, result.evaluated),
                            (member, result.member),
                        ):
                            if flag and message_id not in stage:
                                stage[message_id] = after
            stop.wait(POLL_MS / 1000)


def print_latency(conn: psycopg.Connection[Any], probes: Probes, title: str) -> None:
    sent = len(probes.sent)
    print(f"\n{title} (sent at {probes.send_rate:.1f}/s, polled every {POLL_MS:.0f} ms)")
    print(f"{'from the 2xx to':<44}{'seen':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, stage in (
        ("resolved onto a profile (customer_id)", probes.resolved),
        ("evaluated (evaluated_at)", probes.evaluated),
        (f"member of {SEGMENT}", probes.member),
    ):
        values = [v * 1000 for v in stage.values()]
        if values:
            print(
                f"{label:<44}{len(values):>7}{pct(values, 50):>9.0f}{pct(values, 99):>9.0f}"
                f"{max(values):>9.0f}"
            )
        else:
            print(f"{label:<44}{0:>7}")
    # The same on the server's clock: received (before the commit) to the evaluation's
    # `now` (the membership's entered_at, before that transaction's commit).
    rows = conn.execute(
        "SELECT extract(epoch FROM m.entered_at - e.received_at) * 1000 "
        "FROM events AS e JOIN segment_memberships AS m ON m.customer_id = e.customer_id "
        " AND m.segment = %s WHERE e.source = 'api' AND e.message_id = ANY(%s)",
        (SEGMENT, list(probes.sent)),
    ).fetchall()
    server = [float(r[0]) for r in rows]
    if server:
        print(
            f"{'(server clock: received → evaluation began)':<44}{len(server):>7}"
            f"{pct(server, 50):>9.0f}{pct(server, 99):>9.0f}{max(server):>9.0f}"
        )
    if len(probes.member) < sent:
        print(f"{sent - len(probes.member)} of {sent} events made no member within the timeout")


# --- summary ---------------------------------------------------------------------------------


def summary(figures: dict[str, Any]) -> None:
    n = figures["customers"]
    scale = 100_000 / n
    reads = sum(figures["reads"].values())
    lines: list[tuple[str, str, bool]] = []

    def refresh_line(text: str, seconds: float) -> None:
        scaled = f" (~{seconds * scale:.1f} s per 100,000)" if n != 100_000 else ""
        target = f"≤ {REFRESH_TARGET_S:.0f} s per 100k"
        lines.append((text + scaled, target, seconds * scale <= REFRESH_TARGET_S))

    for key, label in (
        ("backfill", "backfill, in process"),
        ("refresh_stale", "refresh, in process, stale statistics"),
        ("refresh", "refresh, in process, after ANALYZE"),
    ):
        p: Pass = figures[key]
        refresh_line(
            f"{label}: {p.seconds:.1f} s, {p.rate:,.0f} customers/s, "
            f"{p.seconds / reads:.1f}x the reads",
            p.seconds,
        )
    if "worker_refresh" in figures:
        seconds = figures["worker_refresh"]
        refresh_line(f"refresh, through the worker: {seconds:.1f} s", seconds)
    if figures.get("busy_refresh"):
        slowest = max(figures["busy_refresh"])
        refresh_line(
            f"refresh, worker, events arriving: slowest of "
            f"{len(figures['busy_refresh'])} {slowest:.1f} s",
            slowest,
        )
    for key, label in (
        ("quiet", "worker otherwise idle"),
        ("busy", "during refreshes"),
        ("backfill_probe", "during a backfill"),
    ):
        if key in figures:
            probes: Probes = figures[key]
            # An event whose member was never seen counts as infinitely late.
            missing = len(probes.sent) - len(probes.member)
            values = [v * 1000 for v in probes.member.values()] + [float("inf")] * missing
            resolved = [v * 1000 for v in probes.resolved.values()]
            p99 = pct(values, 99) if values else float("inf")
            lines.append(
                (
                    f"membership latency p99, {label}: {p99:.0f} ms "
                    f"({len(probes.member)}/{len(probes.sent)} seen; resolved p99 "
                    f"{pct(resolved, 99) if resolved else float('nan'):.0f} ms)",
                    f"p99 ≤ {LATENCY_TARGET_MS:.0f} ms",
                    p99 <= LATENCY_TARGET_MS,
                )
            )
    print(f"\nsummary ({n:,} customers)")
    width = max(len(text) for text, _, _ in lines)
    for text, target, ok in lines:
        print(f"  {text:<{width}}  target {target:<20}{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
