"""Bulk mode: a synthetic store written straight into PostgreSQL with COPY, for
benchmarks. The store is what the service would hold had the same traffic (history
mode's, for the same seed and span) gone through the intake and identity resolution:
events resolved onto their profiles and already evaluated (rules do not replay
history), profiles with their computed traits, identities, orders, spend and product
views (`stored.py`). Segments are not filled: a refresh does that, as for any history.

Marked as such: every event and order has source `synthetic`, and the load is one row
of `webhook_deliveries` (source `synthetic`, topic `synthetic/bulk`, status `ignored`)
whose headers hold its parameters and whose body its counts. One load per seed and
database: customers' ids, user ids and message ids derive from the seed.

Customers are drawn and their acts generated in `workers` processes, a range of
customers each at a time; this process writes each range in customer order, so the
same seed writes the same rows whatever the number of workers. The whole load is one
transaction: it is all there, or (on an error or Ctrl-C) none of it is.

The SQL is here rather than in the profiles and events repositories because it writes
their tables as a whole, in COPY format, outside any request or task."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import IO, Any

import orjson
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from service.synthetic import catalogue, personas
from service.synthetic.stored import (
    COLUMNS,
    SOURCE,
    TABLES,
    Contact,
    Generator,
    Rows,
    identity_line,
    refusal_line,
)
from service.synthetic.truth import Truth

TOPIC = "synthetic/bulk"
APPLICATION = "personalize-bulk"  # the load's connection, in pg_stat_activity
CHUNK = 250  # customers generated, then written, at a time
PER_WORKER = 2_000  # customers below which a generating process is not worth starting


class AlreadyLoaded(RuntimeError):
    """This seed was bulk-loaded into this database before."""


@dataclass(frozen=True)
class Plan:
    seed: int
    customers: int
    start: datetime
    end: datetime
    personas_file: Path | None = None

    @property
    def key(self) -> str:
        """The load's delivery id: one load per seed and database."""
        return f"bulk/seed={self.seed}"

    def parameters(self) -> dict[str, Any]:
        path = self.personas_file or personas.DEFAULT
        return {
            "seed": self.seed,
            "customers": self.customers,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "personas_file": str(path),
            "personas_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }


@dataclass
class Loaded:
    load_id: int  # the load's webhook_deliveries row
    drawn: int = 0  # customers drawn (those with no act in the span have no profile)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    personas: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    generator_cpu_seconds: float = 0.0  # the generating processes' CPU time, together
    writer_cpu_seconds: float = 0.0  # this process's

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def utc(at: datetime) -> datetime:
    """A naive time is UTC; any other is converted to it."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# --- generating, in worker processes ---------------------------------------------------------

_generator: Generator | None = None


def _start_worker(plan: Plan, evaluated_at: datetime) -> None:
    global _generator
    model = personas.load(plan.personas_file)
    _generator = Generator(
        model=model,
        catalogue=catalogue.build(model, seed=plan.seed),
        seed=plan.seed,
        start=plan.start,
        end=plan.end,
        evaluated_at=evaluated_at,
    )


def _generate(first: int, stop: int) -> Rows:
    assert _generator is not None
    return _generator.rows(first, stop)


def generate(
    plan: Plan, *, evaluated_at: datetime, workers: int, chunk: int = CHUNK
) -> Iterator[Rows]:
    """The plan's rows a range of customers at a time, in customer order. With workers,
    at most two ranges per worker are waiting to be written: memory stays bounded when
    the database is the slower side."""
    ranges = [(i, min(i + chunk, plan.customers)) for i in range(0, plan.customers, chunk)]
    if workers < 1:
        _start_worker(plan, evaluated_at)
        for first, stop in ranges:
            yield _generate(first, stop)
        return
    context = multiprocessing.get_context("spawn")
    with Pool(workers, _start_worker, (plan, evaluated_at), context=context) as pool:
        waiting: deque[AsyncResult[Rows]] = deque()
        todo = iter(ranges)
        while True:
            while len(waiting) < 2 * workers and (taken := next(todo, None)):
                waiting.append(pool.apply_async(_generate, taken))
            if not waiting:
                return
            yield waiting.popleft().get()


# --- writing, in this process ----------------------------------------------------------------

_START = """
    INSERT INTO webhook_deliveries (source, delivery_id, topic, headers, body, status)
    VALUES (%s, %s, %s, %s, %s, 'ignored')
    ON CONFLICT (source, delivery_id) DO NOTHING
    RETURNING id
"""
_FINISH = "UPDATE webhook_deliveries SET body = %s WHERE id = %s"
# Who already holds each of these contact keys (earlier in this load, or before it).
_OWNERS = """
    SELECT i.kind, i.value, i.customer_id::text FROM identities AS i
    JOIN unnest(%s::text[], %s::text[]) AS k(kind, value) ON i.kind = k.kind AND i.value = k.value
"""


def start(conn: psycopg.Connection[Any], plan: Plan) -> int:
    """The load's row; AlreadyLoaded if this seed was loaded here before."""
    parameters = plan.parameters()
    row = conn.execute(
        _START,
        (SOURCE, plan.key, TOPIC, orjson.dumps(parameters).decode(), b"{}"),
    ).fetchone()
    if row is None:
        found = conn.execute(
            "SELECT id, received_at FROM webhook_deliveries WHERE source = %s AND delivery_id = %s",
            (SOURCE, plan.key),
        ).fetchone()
        raise AlreadyLoaded(
            f"seed {plan.seed} was bulk-loaded into this database"
            + (f" on {found[1]:%Y-%m-%d %H:%M} (webhook_deliveries id {found[0]})" if found else "")
            + ": choose another seed or a new database"
        )
    return int(row[0])


def contacts(conn: psycopg.Connection[Any], found: list[Contact]) -> tuple[list[str], list[str]]:
    """(identity lines, refusal lines) for these emails and phones: a key no profile
    holds goes to the first customer who gave it; one another profile holds stays
    there, and the merge is refused once per pair, as resolution does."""
    if not found:
        return [], []
    kinds, values = [c.key.kind for c in found], [c.key.value for c in found]
    owner = {(k, v): c for k, v, c in conn.execute(_OWNERS, (kinds, values))}
    lines: list[str] = []
    refusals: dict[tuple[str, str], str] = {}
    for contact in found:
        pair = (contact.key.kind, contact.key.value)
        held = owner.setdefault(pair, contact.customer)
        if held == contact.customer:
            lines.append(identity_line(contact.customer, contact.key))
        else:
            refusals.setdefault((contact.customer, held), contact.message_id)
    merges = [refusal_line(winner=w, loser=o, message_id=m) for (w, o), m in refusals.items()]
    return lines, merges


def write(conn: psycopg.Connection[Any], rows: Rows) -> dict[str, int]:
    """COPY one range's rows, contacts decided against what is already written."""
    lines, merges = contacts(conn, rows.contacts)
    rows.text["identities"].extend(lines)
    rows.text["profile_merges"].extend(merges)
    with conn.cursor() as cur:
        for table in TABLES:
            if not rows.text[table]:
                continue
            with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                copy.write(rows.data(table))
    return rows.counts()


def load(
    url: str,
    plan: Plan,
    *,
    workers: int | None = None,
    truth: Path | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> Loaded:
    """Write the plan's store into the database at `url`, in one transaction, and its
    ground truth to `truth` (replaced once the transaction has committed). By default
    one generating process per CPU, fewer for a small store (starting one takes
    seconds): at least PER_WORKER customers each, none (this process) below that."""
    began, cpu = time.perf_counter(), time.process_time()
    if workers is None:
        workers = min(os.cpu_count() or 1, plan.customers // PER_WORKER)
    partial = truth.with_name(f"{truth.name}.partial") if truth else None
    try:
        with psycopg.connect(libpq(url), application_name=APPLICATION) as conn:
            loaded = Loaded(load_id=start(conn, plan))
            evaluated_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
            with _truth(partial, plan) as truth_file:
                for rows in generate(plan, evaluated_at=evaluated_at, workers=workers):
                    for table, count in write(conn, rows).items():
                        loaded.rows[table] += count
                    loaded.drawn += rows.drawn
                    loaded.generator_cpu_seconds += rows.cpu_seconds
                    for persona, count in rows.personas.items():
                        loaded.personas[persona] = loaded.personas.get(persona, 0) + count
                    truth_file.write(rows.truth)
                    progress(rows.drawn)
            summary = {**plan.parameters(), "drawn": loaded.drawn, "rows": loaded.rows}
            conn.execute(_FINISH, (orjson.dumps(summary), loaded.load_id))
        if partial is not None and truth is not None:
            partial.replace(truth)
        analyze(url)
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    loaded.seconds = time.perf_counter() - began
    loaded.writer_cpu_seconds = time.process_time() - cpu
    if workers < 1:  # generated here: not the writer's own
        loaded.writer_cpu_seconds -= loaded.generator_cpu_seconds
    return loaded


def analyze(url: str) -> None:
    """Table statistics for what was just written, so the first queries are planned on
    the real sizes (autovacuum may be off, or late: reading an experiment's conversions on
    a fresh 6,000-customer store took 9 s without them, 0.2 s with them)."""
    with psycopg.connect(libpq(url), autocommit=True, application_name=APPLICATION) as conn:
        for table in TABLES:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def _truth(path: Path | None, plan: Plan) -> IO[bytes]:
    """The ground truth file, new, its header written, open for the customers' lines
    (nowhere without a path)."""
    if path is None:
        return open(os.devnull, "wb")
    path.unlink(missing_ok=True)
    Truth(path, header={**plan.parameters(), "mode": "bulk"}).close()
    return path.open("ab")
