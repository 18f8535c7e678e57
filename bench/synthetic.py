"""The synthetic store's modes: bulk mode's rate beside a raw COPY of the same rows, and
history and live mode through a running API, measured in the same run.

    uv run python -m bench.synthetic     # BENCH_DATABASE_URL, else TEST_DATABASE_URL's
                                         # server, else an embedded PostgreSQL
    BENCH_SMOKE=1 uv run python -m bench.synthetic     # tiny sizes, seconds

- Bulk: BENCH_CUSTOMERS (20,000) customers over BENCH_DAYS (8: about 20 events a
  customer, the shape of 1M customers / 20M events) with BENCH_WORKERS generator
  processes (the CPU count; 0: in this process), into a fresh database: rows/s of
  every table together, and events/s. Beside it, the same generation with nothing
  written, and a raw COPY of the same rows (read back from the loaded database into
  memory, then copied into another fresh database in one transaction, a table at a
  time): what PostgreSQL alone takes.
- History: BENCH_HISTORY_CUSTOMERS (500) customers' last BENCH_DAYS through the batch
  endpoints of the API (`personalize api`, BENCH_API_WORKERS processes), as
  `personalize demo` sends them: events accepted a second, generation included.
- Live: BENCH_LIVE_CUSTOMERS (500) customers' next BENCH_LIVE_HOURS (24) of store time,
  sent as fast as the API answers (signed webhooks, Segment and events API, decisions),
  BENCH_CONCURRENCY (8) requests in flight: deliveries a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.ingest import fresh_database
from service import db
from service.synthetic import bulk, catalogue, history, live, personas
from service.synthetic.sender import Sender, Target
from service.synthetic.stored import COLUMNS, TABLES
from tests import support
from tests.support import api_process

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "60" if SMOKE else "20000"))
DAYS = int(os.environ.get("BENCH_DAYS", "8"))
# Smoke: generated in this process (starting workers alone takes seconds).
WORKERS = int(os.environ.get("BENCH_WORKERS", "0" if SMOKE else str(os.cpu_count() or 1)))
HISTORY_CUSTOMERS = int(os.environ.get("BENCH_HISTORY_CUSTOMERS", "20" if SMOKE else "500"))
LIVE_CUSTOMERS = int(os.environ.get("BENCH_LIVE_CUSTOMERS", "20" if SMOKE else "500"))
LIVE_HOURS = float(os.environ.get("BENCH_LIVE_HOURS", "6" if SMOKE else "24"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
API_WORKERS = os.environ.get("BENCH_API_WORKERS", "1" if SMOKE else "2")
SEED = 1
END = datetime(2030, 3, 1, tzinfo=UTC)  # a fixed store: the same rows in every run
SECRETS = {"shopify": "shpss_bench_secret", "woocommerce": "wc_bench_secret"}
KEYS = {
    "IDENTITY_HASH_KEY": "bench",
    "PII_ENCRYPTION_KEYS": "rQ5G9zP4m1YyZ7f3c2kq0bq6rX9d8JzF0pTj1uVwXy4=",
}


def main() -> None:
    for name, value in KEYS.items():
        os.environ.setdefault(name, value)  # the generator workers hash and encrypt too
    plan = bulk.Plan(seed=SEED, customers=CUSTOMERS, start=END - timedelta(days=DAYS), end=END)
    print(
        f"\nsynthetic store on {os.cpu_count()} cores: {CUSTOMERS:,} customers over {DAYS} days,"
        f" {WORKERS} generator processes{' (smoke sizes)' if SMOKE else ''}"
    )
    print(f"{'measure':<52}{'rows/s':>10}{'events/s':>10}{'seconds':>9}{'rows':>11}")
    generated, generated_cpu = generate_only(plan)
    with fresh_database("synthetic_bulk") as url:
        db.upgrade(url)
        backend = Backend(url)
        loaded = bulk.load(url, plan, workers=WORKERS, progress=backend.progress)
        dumped = dump(url)
    with fresh_database("synthetic_copy") as url:
        db.upgrade(url)
        copied, copy_cpu = raw_copy(url, dumped)
    rows, events = loaded.total_rows, loaded.rows["events"]
    line("raw COPY of the same rows (one transaction)", rows, events, copied)
    line(f"bulk mode, {WORKERS} workers, written", rows, events, loaded.seconds)
    line(f"bulk mode, {WORKERS} workers, generated only", rows, events, generated)
    print(f"bulk mode / raw COPY: {copied / loaded.seconds:.2f}")
    cpu = {
        "generating (workers)": loaded.generator_cpu_seconds,
        "writing (this process)": loaded.writer_cpu_seconds,
        "PostgreSQL backend, bulk mode": backend.cpu,
        "PostgreSQL backend, raw COPY": copy_cpu,
    }
    print(f"CPU seconds per million events (the machine's load aside; {generated_cpu:.1f} s")
    print(f"of generation alone for {events:,} events):")
    for label, seconds in cpu.items():
        print(f"  {label:<50}" + (f"{seconds / events * 1e6:>8,.0f}" if seconds else "     n/a"))
    if backend.cpu:
        total = (loaded.generator_cpu_seconds + loaded.writer_cpu_seconds + backend.cpu) / events
        cores = os.cpu_count() or 1
        print(
            f"bulk mode's CPU for 20M events: {total * 20e6 / 60:,.0f} core-minutes, "
            f"{total * 20e6 / 60 / cores:,.0f} minutes on {cores} idle cores"
        )
    if loaded.rows != {t: len(d.splitlines()) for t, d in dumped.items()}:
        raise SystemExit(f"bulk mode counted {loaded.rows}, the database holds other counts")
    with fresh_database("synthetic_api") as url, api(url) as target:
        sent, seconds = send_history(target)
        print(f"{'history mode through the API (accepted events)':<52}{'':>10}", end="")
        print(f"{sent / seconds:>10,.0f}{seconds:>9.1f}{sent:>11,}")
        deliveries, decisions, seconds = send_live(target)
        print(f"{'live mode through the API (deliveries)':<52}{'':>10}", end="")
        print(f"{deliveries / seconds:>10,.0f}{seconds:>9.1f}{deliveries:>11,}")
        print(f"live mode: {decisions:,} decisions asked beside them")


def line(label: str, rows: int, events: int, seconds: float) -> None:
    print(
        f"{label:<52}{rows / seconds:>10,.0f}{events / seconds:>10,.0f}{seconds:>9.1f}{rows:>11,}"
    )


def generate_only(plan: bulk.Plan) -> tuple[float, float]:
    """(seconds, CPU seconds of the generating processes) with nothing written."""
    began, cpu = time.perf_counter(), 0.0
    for rows in bulk.generate(plan, evaluated_at=END, workers=WORKERS):
        cpu += rows.cpu_seconds
    return time.perf_counter() - began, cpu


def backend_cpu(pid: int) -> float | None:
    """CPU seconds a PostgreSQL backend has used, where the server runs on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Backend:
    """The CPU time of bulk mode's connection, read after each range it wrote."""

    def __init__(self, url: str) -> None:
        self.url, self.pid, self.cpu = url, 0, 0.0

    def progress(self, _customers: int) -> None:
        if not self.pid:
            with psycopg.connect(support.libpq_url(self.url)) as conn:
                found = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                    "AND datname = current_database()",
                    (bulk.APPLICATION,),
                ).fetchone()
            self.pid = found[0] if found else -1
        self.cpu = backend_cpu(self.pid) or 0.0


def dump(url: str) -> dict[str, bytes]:
    """Every bulk-loaded table's rows, in COPY text format, in memory."""
    out: dict[str, bytes] = {}
    with psycopg.connect(support.libpq_url(url)) as conn, conn.cursor() as cur:
        for table in TABLES:
            with cur.copy(f"COPY (SELECT {COLUMNS[table]} FROM {table}) TO STDOUT") as copy:
                out[table] = b"".join(bytes(block) for block in copy)
    return out


def raw_copy(url: str, dumped: dict[str, bytes]) -> tuple[float, float]:
    """(seconds, backend CPU seconds) to COPY the rows into the tables, a table at a time,
    in one transaction."""
    with psycopg.connect(support.libpq_url(url)) as conn, conn.cursor() as cur:
        before = backend_cpu(conn.info.backend_pid)
        began = time.perf_counter()
        for table in TABLES:
            with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                copy.write(dumped[table])
        conn.commit()
        seconds = time.perf_counter() - began
        after = backend_cpu(conn.info.backend_pid)
    return seconds, (after - before) if after is not None and before is not None else 0.0


@contextmanager
def api(url: str) -> Iterator[Target]:
    """The API as a process on a migrated database, and keys to send with."""
    db.upgrade(url)
    port = support.free_port()
    env = {
        **os.environ,
        **KEYS,
        "DATABASE_URL": url,
        "PORT": str(port),
        "API_WORKERS": API_WORKERS,
        "LOG_LEVEL": "warning",
        "RULES_WATCH": "false",
        "WEBHOOK_SECRETS": json.dumps({p: [s] for p, s in SECRETS.items()}),
    }
    env.pop("BROKER_URL", None)
    keys = {
        scope: support.cli_key(env, scope, name=f"bench-{scope}")
        for scope in ("ingest", "storefront")
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-synthetic-") as tmp,
        api_process.running(env, Path(tmp) / "api.log") as api,
    ):
        yield Target(
            api.base,
            keys["ingest"]["Authorization"].removeprefix("Bearer "),
            keys["storefront"]["Authorization"].removeprefix("Bearer "),
            SECRETS,
        )


def send_history(target: Target) -> tuple[int, float]:
    """(events accepted, seconds) for history mode's customers and days."""
    model = personas.load()
    shop = catalogue.build(model, seed=SEED)
    now = datetime.now(UTC).replace(microsecond=0)

    async def send() -> Sender:
        sender = Sender(target, concurrency=CONCURRENCY)
        try:
            await history.run(
                model,
                shop,
                sender,
                seed=SEED,
                customers=range(HISTORY_CUSTOMERS),
                start=now - timedelta(days=DAYS),
                end=now,
            )
        finally:
            await sender.close()
        return sender

    began = time.perf_counter()
    tally = asyncio.run(send()).tally
    seconds = time.perf_counter() - began
    if tally.failed or tally.rejected:
        raise SystemExit(f"history mode: {tally.failed} requests failed, {tally.rejected} rejected")
    return tally.accepted, seconds


def send_live(target: Target) -> tuple[int, int, float]:
    """(deliveries sent, decisions asked, seconds) for live mode, as fast as it answers."""
    model = personas.load()
    shop = catalogue.build(model, seed=SEED)
    now = datetime.now(UTC).replace(microsecond=0)

    async def send() -> Sender:
        sender = Sender(target, concurrency=CONCURRENCY)
        try:
            await live.run(
                live.Live(model, shop, sender, None),
                seed=SEED,
                customers=range(LIVE_CUSTOMERS),
                start=now - timedelta(days=DAYS),
                now=now,
                end=now + timedelta(hours=LIVE_HOURS),
                speed=None,
                rate=None,
                stop=asyncio.Event(),
            )
        finally:
            await sender.close()
        return sender

    began = time.perf_counter()
    tally = asyncio.run(send()).tally
    seconds = time.perf_counter() - began
    if tally.failed or tally.rejected:
        raise SystemExit(f"live mode: {tally.failed} requests failed, {tally.rejected} rejected")
    return sum(tally.sent.values()), tally.decisions, seconds


if __name__ == "__main__":
    main()
