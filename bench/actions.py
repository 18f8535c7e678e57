"""Scheduled actions: how late waiting rules fire with 100,000 waiting, and how fast
workers deliver actions to a local HTTP sink, beside bare POSTs to the same sink.

    uv run python -m bench.actions     # BENCH_DATABASE_URL, else TEST_DATABASE_URL's
                                       # server, else an embedded PostgreSQL

A fresh database holds BENCH_WAITING (100,000) rules waiting for due times spread over
the next day, and as many pending actions due later (the table sizes the timers scan
past). The real processes run as subprocesses: `personalize timers` and a Celery worker
(`--concurrency 2`) on the broker in BROKER_URL, else RabbitMQ on 127.0.0.1:5672 when
it answers, else the PostgreSQL one.

- Lateness: BENCH_PROBES waiting rules come due one after another over
  BENCH_PROBE_SPAN_S seconds. For each: decided (re-checked at its due time, its action
  created) minus due, and delivered (the sink answered) minus due; p50, p99, max. The
  target is decided within 1 s.
- Throughput: BENCH_DISPATCH actions due at once, from commit to the last delivery;
  beside the same number of signed POSTs sent to the sink directly from two threads
  (the floor: the sink and HTTP itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.ingest import fresh_database
from service import db
from service.actions.channels import signed_headers
from tests import support
from tests.support.sinks import HttpSink, http_sink

WAITING = int(os.environ.get("BENCH_WAITING", "100000"))
PROBES = int(os.environ.get("BENCH_PROBES", "300"))
PROBE_SPAN_S = float(os.environ.get("BENCH_PROBE_SPAN_S", "30"))
DISPATCH = int(os.environ.get("BENCH_DISPATCH", "3000"))

RULES = """
ruleset: bench
version: 1
rules:
  - id: delayed_ping
    trigger: {event: Product Viewed}
    delay: 1h
    actions:
      - webhook: {destination: sink, params: {product: "{{ event.properties.product_id }}"}}
"""


def main() -> None:
    with (
        fresh_database("actions") as url,
        tempfile.TemporaryDirectory() as tmp,
        http_sink() as sink,
    ):
        run(url, Path(tmp), sink)


def run(url: str, tmp: Path, sink: HttpSink) -> None:
    db.upgrade(url)
    rules_dir = tmp / "rules"
    rules_dir.mkdir()
    (rules_dir / "bench.yaml").write_text(RULES)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=url,
        DATA_DIR=str(tmp / "data"),
        RULES_DIR=str(rules_dir),
        RULES_WATCH="false",
        BROKER_QUEUE=f"bench-{uuid.uuid4().hex[:8]}",
        ACTION_DESTINATIONS=json.dumps({"sink": {"url": sink.url, "secret": sink.secret}}),
        LOG_LEVEL="warning",
    )
    if not env.get("BROKER_URL") and support.port_open("127.0.0.1", 5672):
        env["BROKER_URL"] = "amqp://guest:guest@127.0.0.1:5672//"
    broker = env.get("BROKER_URL", "").split("@")[-1] or "PostgreSQL (kombu SQLAlchemy transport)"
    print(f"broker: {broker}", flush=True)
    subprocess.run([sys.executable, "-m", "service.cli", "rules", "reload"], env=env, check=True)
    conn = psycopg.connect(support.libpq_url(url), autocommit=True)
    version_id = conn.execute("SELECT id FROM ruleset_versions").fetchone()[0]  # type: ignore[index]
    started = time.monotonic()
    seed(conn, version_id)
    print(
        f"seeded {WAITING:,} waiting rules and {WAITING:,} pending actions due later "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args], env=env, start_new_session=True
        )
        for args in (["timers"], ["worker", "--concurrency=2"])
    ]
    try:
        warm_up(conn, version_id, sink)
        lateness(conn, version_id)
        throughput(conn, version_id, sink)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        conn.close()


def seed(conn: psycopg.Connection[Any], version_id: int) -> None:
    """WAITING customers, each with a viewed product, a rule waiting for it (due over the
    next day) and a pending action due later."""
    conn.execute(
        "CREATE TEMP TABLE seed AS SELECT gen_random_uuid() AS customer, i, "
        "now() + interval '1 hour' + random() * interval '1 day' AS due "
        "FROM generate_series(1, %s) AS i",
        (WAITING,),
    )
    conn.execute("INSERT INTO customers (id) SELECT customer FROM seed")
    conn.execute(
        "INSERT INTO events (source, message_id, customer_id, type, name, occurred_at, "
        " properties, context, evaluated_at) "
        "SELECT 'bench', 'seed-' || i, customer, 'track', 'Product Viewed', now(), "
        " jsonb_build_object('product_id', 'p' || i), '{}', now() FROM seed"
    )
    conn.execute(
        "INSERT INTO rule_firings (event_id, customer_id, ruleset, rule_id, rule_version, "
        " version_id, status, facts, actions, due_at) "
        "SELECT e.id, e.customer_id, 'bench', 'delayed_ping', 1, %s, 'scheduled', '{}', '[]', "
        " s.due FROM events e JOIN seed s ON s.customer = e.customer_id",
        (version_id,),
    )
    conn.execute(
        "INSERT INTO actions (key, firing_id, ordinal, customer_id, channel, payload, status, "
        " next_attempt_at) "
        "SELECT 'seed_' || f.id, f.id, 0, f.customer_id, 'webhook', "
        ' \'{"type": "webhook", "destination": "sink"}\', \'pending\', f.due_at '
        "FROM rule_firings f"
    )
    conn.execute("VACUUM ANALYZE")


def due_rules(
    conn: psycopg.Connection[Any], version_id: int, dues: list[datetime], tag: str
) -> None:
    """Waiting rules due at `dues` (their trigger an hour before: the rule's delay)."""
    with conn.transaction():
        for i, due in enumerate(dues):
            customer = uuid.uuid4()
            conn.execute("INSERT INTO customers (id) VALUES (%s)", (customer,))
            event_id = conn.execute(  # type: ignore[index]
                "INSERT INTO events (source, message_id, customer_id, type, name, "
                " occurred_at, properties, context, evaluated_at) "
                "VALUES ('bench', %s, %s, 'track', 'Product Viewed', %s, %s, '{}', now()) "
                "RETURNING id",
                (
                    f"{tag}-{i}",
                    customer,
                    due - timedelta(hours=1),
                    json.dumps({"product_id": f"{tag}-{i}"}),
                ),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO rule_firings (event_id, customer_id, ruleset, rule_id, "
                " rule_version, version_id, status, facts, actions, due_at) "
                "VALUES (%s, %s, 'bench', 'delayed_ping', 1, %s, 'scheduled', '{}', '[]', %s)",
                (event_id, customer, version_id, due),
            )


def wait_delivered(conn: psycopg.Connection[Any], tag: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = conn.execute(  # type: ignore[index]
            "SELECT count(*) FROM actions WHERE status IN ('sent', 'dead') "
            "AND payload -> 'params' ->> 'product' LIKE %s",
            (f"{tag}-%",),
        ).fetchone()[0]
        if done >= count:
            return
        time.sleep(0.2)
    raise SystemExit(f"{tag}: only {done} of {count} delivered within {timeout:.0f} s")


def warm_up(conn: psycopg.Connection[Any], version_id: int, sink: HttpSink) -> None:
    due_rules(conn, version_id, [datetime.now(UTC)] * 10, "warm")
    wait_delivered(conn, "warm", 10, timeout=120)


def lateness(conn: psycopg.Connection[Any], version_id: int) -> None:
    start = datetime.now(UTC) + timedelta(seconds=3)
    step = PROBE_SPAN_S / PROBES
    dues = [start + timedelta(seconds=i * step) for i in range(PROBES)]
    due_rules(conn, version_id, dues, "probe")
    wait_delivered(conn, "probe", PROBES, timeout=PROBE_SPAN_S + 120)
    rows = conn.execute(
        "SELECT extract(epoch FROM f.decided_at - f.due_at), "
        " extract(epoch FROM a.finished_at - f.due_at) "
        "FROM rule_firings f JOIN actions a ON a.firing_id = f.id "
        "WHERE a.payload -> 'params' ->> 'product' LIKE 'probe-%'"
    ).fetchall()
    waiting = conn.execute(  # type: ignore[index]
        "SELECT count(*) FROM rule_firings WHERE status = 'scheduled'"
    ).fetchone()[0]
    print(
        f"\nlateness of {len(rows)} rules coming due over {PROBE_SPAN_S:.0f} s, "
        f"{waiting:,} others waiting (seconds)"
    )
    print(f"{'':<34}{'p50':>8}{'p99':>8}{'max':>8}")
    for label, values in (
        ("decided (re-checked, action made)", [float(r[0]) for r in rows]),
        ("delivered (the sink answered)", [float(r[1]) for r in rows]),
    ):
        print(f"{label:<34}{pct(values, 50):>8.3f}{pct(values, 99):>8.3f}{max(values):>8.3f}")
    worst = max(float(r[0]) for r in rows)
    print(f"decided within 1 s of due: {'met' if worst <= 1.0 else 'NOT met'} (max {worst:.3f} s)")


def throughput(conn: psycopg.Connection[Any], version_id: int, sink: HttpSink) -> None:
    before = len(sink.received)
    now = datetime.now(UTC)
    started = time.monotonic()
    due_rules(conn, version_id, [now] * DISPATCH, "burst")
    wait_delivered(conn, "burst", DISPATCH, timeout=600)
    elapsed = time.monotonic() - started
    assert len(sink.received) - before >= DISPATCH
    decided_s, handed_s = conn.execute(  # type: ignore[misc]
        "SELECT extract(epoch FROM max(f.decided_at) - min(f.due_at)), "
        " extract(epoch FROM max(a.enqueued_at) - min(f.due_at)) "
        "FROM rule_firings f JOIN actions a ON a.firing_id = f.id "
        "WHERE a.payload -> 'params' ->> 'product' LIKE 'burst-%'"
    ).fetchone()

    body = json.dumps({"type": "action.webhook", "data": {"action": {"product": "x"}}}).encode()
    client = httpx.Client()
    counter = iter(range(DISPATCH))
    lock = threading.Lock()

    def post() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            headers = signed_headers(key=f"bare_{i}", body=body, secret=sink.secret)
            client.post(sink.url, content=body, headers=headers).raise_for_status()

    bare_started = time.monotonic()
    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bare = time.monotonic() - bare_started
    title = f"dispatch, {DISPATCH:,} due at once"
    print(f"\n{title:<48}{'per second':>12}{'vs bare':>9}")
    label = "bare signed POSTs to the sink, 2 threads"
    print(f"{label:<48}{DISPATCH / bare:>12,.0f}{1.0:>9.2f}")
    print(
        f"{'actions: decided, handed over, delivered, recorded':<48}"
        f"{DISPATCH / elapsed:>12,.0f}{bare / elapsed:>9.2f}"
    )
    print(
        f"(all {DISPATCH:,} decided after {float(decided_s):.1f} s, handed to workers after "
        f"{float(handed_s):.1f} s, delivered after {elapsed:.1f} s)"
    )


def pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
