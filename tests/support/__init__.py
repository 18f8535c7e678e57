"""Helpers shared by tests: databases on the test server, free ports, waiting."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from contextlib import closing
from typing import TypeVar

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from service.db import get_engine, get_sessionmaker, sqlalchemy_url
from service.ruleset.runtime import RUNTIME
from service.settings import get_settings
from service.worker import get_celery

T = TypeVar("T")


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as a plain libpq URL (for psycopg.connect)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    return sqlalchemy_url(make_url(url).set(database=database).render_as_string(False))


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        drop_database(conn, name)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop(admin_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        drop_database(conn, name)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(probe: Callable[[], T | None], *, timeout: float, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # the thing we wait for may not be up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error!r})")


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def resolve_all() -> int:
    """Resolve every stored event onto profiles, as the worker's task does after a
    commit; inside a test, on the test's connection."""
    from service import db
    from service.profiles.resolution import resolve_pending

    total = 0
    with db.transaction() as session:
        while done := resolve_pending(session):
            total += done
    return total


def cli_key(env: dict[str, str], *scopes: str, name: str = "test") -> dict[str, str]:
    """A new API key made by `personalize create-api-key` in a process with `env`, as an
    Authorization header."""
    import subprocess
    import sys

    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    created = subprocess.run(
        [sys.executable, "-m", "service.cli", "create-api-key", "--name", name, *scope_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}


def clear_caches() -> None:
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    # The cached originals: tests may have monkeypatched the module attributes.
    for cached in (get_settings, get_engine, get_sessionmaker, get_celery):
        cached.cache_clear()
    RUNTIME.forget()  # a deployment id of another test database means other rules
