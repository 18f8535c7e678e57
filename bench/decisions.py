"""The storefront's decision endpoint over HTTP with 100,000 profiles and the shipped
rules, beside a bare FastAPI endpoint returning a constant, in the same run.

    uv run python -m bench.decisions     # BENCH_DATABASE_URL, else TEST_DATABASE_URL's
                                         # server, else an embedded PostgreSQL

Both run as `uvicorn` with BENCH_API_WORKERS (2) processes; the load comes from another
process (wrk when the machine has it, else aiohttp; the paced run always aiohttp).
Requests name a random one of BENCH_PROFILES customers (10% in `high_value`, a third
with orders, 5% with an offer waiting for `cart_drawer`), one to three placements, and
a context with a cart value. Two runs each:

- paced: BENCH_RATE (500) requests/s for BENCH_SECONDS, every latency recorded;
  p50, p99, max. Target for decisions: p99 ≤ 10 ms.
- flat out: BENCH_CONCURRENCY (32) in flight for BENCH_SECONDS; requests/s. Target:
  decisions ≥ 50% of the bare endpoint.
- flat out again, decisions only, as pages whose three widgets each ask for their own
  placement at once (three requests in a row for one customer): what the per-customer
  snapshot (read once, shared by reads at the same moment, kept DECISION_CACHE_TTL_S)
  saves.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg

from bench import load
from bench.ingest import fresh_database
from service import db
from tests import support

PROFILES = int(os.environ.get("BENCH_PROFILES", "100000"))
RATE = float(os.environ.get("BENCH_RATE", "500"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
WORKERS = os.environ.get("BENCH_API_WORKERS", "2")
RULES = Path(__file__).parents[1] / "rules"
PLACEMENTS = ["homepage_hero", "cart_drawer", "product_recs"]


def main() -> None:
    with fresh_database("decisions") as url:
        run(url)


def run(url: str) -> None:
    db.upgrade(url)
    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    env.update(
        DATABASE_URL=url,
        RULES_DIR=str(RULES),
        RULES_WATCH="false",
        LOG_LEVEL="warning",
        API_WORKERS=WORKERS,
        IDENTITY_HASH_KEY="bench",
        PII_ENCRYPTION_KEYS="rQ5G9zP4m1YyZ7f3c2kq0bq6rX9d8JzF0pTj1uVwXy4=",
    )
    cli = [sys.executable, "-m", "service.cli"]
    subprocess.run([*cli, "rules", "reload"], env=env, check=True, capture_output=True)
    headers = {
        **support.cli_key(env, "storefront", name="bench"),
        "content-type": "application/json",
    }
    started = time.monotonic()
    seed(support.libpq_url(url))
    print(f"seeded {PROFILES:,} profiles in {time.monotonic() - started:.1f} s", flush=True)
    requests = [("/v1/decisions", body(), headers) for _ in range(50_000)]
    # Pages whose widgets ask one placement each, at once: three requests in a row for
    # one customer (decisions only; the bare endpoint's answer does not depend on it).
    widgets = [("/v1/decisions", data, headers) for _ in range(17_000) for data in page()]

    results: dict[str, dict[str, float]] = {}
    for label, command in (
        ("bare FastAPI endpoint (constant)", ["uvicorn", "bench.bare:app"]),
        ("bare endpoint + the snapshot read", ["uvicorn", "bench.bare:read_app"]),
        ("POST /v1/decisions", ["uvicorn", "--factory", "service.app:create_app"]),
    ):
        port = support.free_port()
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", *command, "--port", str(port), "--workers", WORKERS),
                *("--log-level", "warning", "--no-access-log"),
            ],
            env=env,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            support.wait_for(functools.partial(_up, base), timeout=60)
            check(base, requests[0])
            load.run(base, requests[:2000], concurrency=CONCURRENCY, seconds=2)  # warm-up
            paced = paced_run(base, requests[: int(RATE * SECONDS)])
            flat = load.run(base, requests, concurrency=CONCURRENCY, seconds=SECONDS)
            if label == "POST /v1/decisions":
                by_widget = load.run(base, widgets, concurrency=CONCURRENCY, seconds=SECONDS)
        finally:
            server.terminate()
            server.wait(timeout=30)
        results[label] = {**paced, "flat": flat.rate, "flat_p99": flat.p99_ms or float("nan")}
        results[label]["tool"] = flat.tool  # type: ignore[assignment]
    # Every decision is logged (flushed at shutdown): a degraded answer is a cheap one,
    # so they are counted, not hidden in the rate.
    with psycopg.connect(support.libpq_url(url)) as conn:
        logged, degraded = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE degraded) FROM decisions"
        ).fetchone()  # type: ignore[misc]

    print(
        f"\n{PROFILES:,} profiles, {WORKERS} API processes, paced at {RATE:.0f}/s "
        f"for {SECONDS:.0f} s, then flat out with {CONCURRENCY} in flight "
        f"({results['POST /v1/decisions']['tool']})"
    )
    print(
        f"{'':<36}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'sent/s':>8}{'flat/s':>9}{'vs bare':>9}"
    )
    bare = results["bare FastAPI endpoint (constant)"]["flat"]
    for label, r in results.items():
        print(
            f"{label:<36}{r['p50']:>8.2f}{r['p99']:>8.2f}{r['max']:>8.2f}"
            f"{r['rate']:>8.0f}{r['flat']:>9,.0f}{r['flat'] / bare:>9.2f}"
        )
    print(
        f"{'POST /v1/decisions, one per widget':<36}{'':>32}{by_widget.rate:>9,.0f}"
        f"{by_widget.rate / bare:>9.2f}   (3 requests a page, one placement each)"
    )
    print(f"decisions logged: {logged:,}, of which degraded (defaults served): {degraded:,}")
    d = results["POST /v1/decisions"]
    print(
        f"decisions p99 at {RATE:.0f}/s: {d['p99']:.2f} ms (target ≤ 10 ms): "
        f"{'met' if d['p99'] <= 10 else 'NOT met'}"
    )
    print(
        f"decisions throughput: {d['flat'] / bare:.2f} of bare (target ≥ 0.50): "
        f"{'met' if d['flat'] / bare >= 0.5 else 'NOT met'}"
    )
    read = results["bare endpoint + the snapshot read"]["flat"]
    print(
        f"the read alone leaves the bare endpoint {read / bare:.2f} of its rate; decisions "
        f"are {d['flat'] / read:.2f} of the bare endpoint with the read"
    )


def body() -> bytes:
    i = random.randrange(PROFILES)
    request: dict[str, Any] = {
        "placements": random.sample(PLACEMENTS, random.randint(1, 3)),
        "context": {"cart": {"value": random.choice([0, 20, 45, 80, 150])}, "device": "mobile"},
    }
    if random.random() < 0.9:
        request["user_id"] = f"u{i}"
    else:
        request["anonymous_id"] = f"visitor-{uuid.uuid4().hex[:8]}"  # never seen
    return json.dumps(request).encode()


def page() -> list[bytes]:
    """One page view of a known customer whose three widgets ask separately."""
    i = random.randrange(PROFILES)
    context = {"cart": {"value": random.choice([0, 20, 45, 80, 150])}, "device": "mobile"}
    return [
        json.dumps({"user_id": f"u{i}", "placements": [p], "context": context}).encode()
        for p in PLACEMENTS
    ]


def check(base: str, request: tuple[str, bytes, dict[str, str]]) -> None:
    path, data, headers = request
    response = httpx.post(base + path, content=data, headers=headers, timeout=10)
    response.raise_for_status()


def _up(base: str) -> bool | None:
    try:
        httpx.get(base + "/", timeout=2)  # any answer (a 404) will do; it costs nothing
        return True
    except httpx.HTTPError:
        return None


def paced_run(base: str, requests: list[tuple[str, bytes, dict[str, str]]]) -> dict[str, float]:
    """The paced client in a process of its own, holding only its requests, with its
    garbage collector off: a pause of the client would show as the server's latency."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_paced_child, (base, requests))


def _paced_child(base: str, requests: list[tuple[str, bytes, dict[str, str]]]) -> dict[str, float]:
    gc.collect()
    gc.disable()
    return asyncio.run(_paced(base, requests, rate=RATE, seconds=SECONDS))


async def _paced(
    base: str, requests: list[tuple[str, bytes, dict[str, str]]], *, rate: float, seconds: float
) -> dict[str, float]:
    """Open loop: a request every 1/rate s whatever the answers do; each one timed."""
    latencies: list[float] = []
    failures = 0
    count = int(rate * seconds)
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=256)) as client:

        async def one(request: tuple[str, bytes, dict[str, str]]) -> None:
            nonlocal failures
            path, data, headers = request
            sent = time.perf_counter()
            async with client.post(path, data=data, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append((time.perf_counter() - sent) * 1000)

        started = time.perf_counter()
        tasks = []
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(requests[n % len(requests)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} paced requests failed")
    latencies.sort()
    return {
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max": latencies[-1],
        "rate": count / elapsed,
    }


def seed(libpq: str) -> None:
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE seed AS "
            "SELECT i, gen_random_uuid() AS id FROM generate_series(0, %s) AS i",
            (PROFILES - 1,),
        )
        conn.execute(
            "INSERT INTO customers (id, orders_count, traits) SELECT id, "
            " CASE WHEN i % 3 = 0 THEN 1 + i % 4 ELSE 0 END, "
            " jsonb_build_object('first_name', 'Sam', 'consent', "
            "  jsonb_build_object('marketing', i % 10 < 7)) FROM seed"
        )
        conn.execute(
            "INSERT INTO identities (customer_id, kind, value) "
            "SELECT id, 'user_id', 'u' || i FROM seed"
        )
        conn.execute(
            "INSERT INTO segment_memberships (customer_id, segment, added_by) "
            "SELECT id, 'high_value', 'bench' FROM seed WHERE i % 10 = 0"
        )
        version_id = conn.execute("SELECT max(id) FROM ruleset_versions").fetchone()[0]  # type: ignore[index]
        # 5%: an offer waiting in the inbox for the cart drawer (from a fired rule).
        conn.execute(
            "INSERT INTO events (source, message_id, customer_id, type, name, occurred_at, "
            " properties, context, evaluated_at) SELECT 'bench', 'e' || i, id, 'track', "
            " 'Product Added', now(), '{}', '{}', now() FROM seed WHERE i % 20 = 0"
        )
        conn.execute(
            "INSERT INTO rule_firings (event_id, customer_id, ruleset, rule_id, rule_version, "
            " version_id, status, facts, actions, due_at) SELECT e.id, e.customer_id, "
            " 'cart_abandonment', 'cart_abandoned', 1, %s, 'fired', '{}', '[]', now() "
            "FROM events e",
            (version_id,),
        )
        conn.execute(
            "INSERT INTO actions (key, firing_id, ordinal, customer_id, channel, payload, "
            " status, next_attempt_at) SELECT 'b' || f.id, f.id, 0, f.customer_id, 'email', "
            " '{}', 'sent', now() FROM rule_firings f"
        )
        conn.execute(
            "INSERT INTO inbox_items (action_id, customer_id, kind, name, placement, params, "
            " expires_at) SELECT a.id, a.customer_id, 'offer', 'CART10', 'cart_drawer', '{}', "
            " now() + interval '7 days' FROM actions a"
        )
        conn.execute("VACUUM ANALYZE")


if __name__ == "__main__":
    main()
