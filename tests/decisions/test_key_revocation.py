"""A revoked API key stops working on the decision endpoint within a second, in every
API process, however it was revoked; also while a process's notification listener is
away. Two API processes on one database; the key cache in each is what is tested."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests import support
from tests.support.api_process import ApiProcess, Setup, database_name, setup, until

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
LISTENER = "personalize-invalidation"  # the listener connection's application_name


@dataclass
class Shop:
    setup: Setup
    apis: list[ApiProcess]

    def new_key(self, name: str) -> tuple[dict[str, str], str]:
        headers = self.setup.key("storefront", name=name)
        prefix = "_".join(headers["Authorization"].removeprefix("Bearer ").split("_")[:2])
        for api in self.apis:  # known, and cached, by every process
            response = api.decide(headers)
            assert response.status_code == 200, response.text
            assert response.json()["degraded"] is False
        return headers, prefix


@pytest.fixture(scope="module")
def shop(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("revocation")
    s = setup(make_database("revocation"), tmp, rules_dir=SHIPPED, DECISION_BUDGET_MS="2000")
    assert s.cli("rules", "reload").returncode == 0
    try:
        apis = [s.start_api(tmp), s.start_api(tmp)]
        yield Shop(s, apis)
    finally:
        s.stop()


def _refused(api: ApiProcess, headers: dict[str, str]) -> bool:
    return api.decide(headers).status_code == 401


def _revoke(libpq: str, prefix: str) -> float:
    """Revoke by SQL (as any tool might); returns the moment of the commit."""
    with psycopg.connect(libpq) as conn:
        updated = conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s", (prefix,)
        ).rowcount
        conn.commit()
        committed = time.monotonic()
    assert updated == 1
    return committed


def test_a_revoked_key_is_refused_by_every_process_within_a_second(shop: Shop) -> None:
    headers, prefix = shop.new_key("revoked-by-sql")
    committed = _revoke(shop.setup.libpq, prefix)
    for api in shop.apis:
        until(
            lambda api=api: _refused(api, headers), deadline_s=1.0 - (time.monotonic() - committed)
        )
    assert all(_refused(api, headers) for api in shop.apis)  # and stays refused


def test_a_key_revoked_with_the_cli_is_refused_at_once(shop: Shop) -> None:
    headers, prefix = shop.new_key("revoked-by-cli")
    done = shop.setup.cli("revoke-api-key", prefix)
    assert done.returncode == 0, done.stderr
    exited = time.monotonic()  # the commit was before
    for api in shop.apis:
        until(lambda api=api: _refused(api, headers), deadline_s=1.0 - (time.monotonic() - exited))


def test_a_key_is_still_revoked_within_a_second_while_the_listener_is_away(
    shop: Shop, server_url: str
) -> None:
    """The listener's connection is cut and cannot come back (the database refuses new
    connections; the decision reads keep their pooled ones): the process no longer
    trusts its cache beyond a second and checks the key again."""
    headers, prefix = shop.new_key("revoked-while-away")
    name = database_name(shop.setup.url)
    api = shop.apis[0]
    with (
        psycopg.connect(support.libpq_url(server_url), autocommit=True) as admin,
        psycopg.connect(shop.setup.libpq) as conn,  # opened before new ones are refused
    ):
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = %s",
                (name, LISTENER),
            )
            assert api.decide(headers).status_code == 200  # checked again, still valid
            conn.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = %s", (prefix,))
            conn.commit()
            committed = time.monotonic()
            until(lambda: _refused(api, headers), deadline_s=1.0 - (time.monotonic() - committed))
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_the_listener_comes_back_and_keys_are_cached_again(shop: Shop) -> None:
    """Once the database takes connections again, every process listens again and a
    revocation reaches them all at once, as before."""
    name = database_name(shop.setup.url)

    def listening() -> bool:
        with psycopg.connect(shop.setup.libpq) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND application_name = %s",
                (name, LISTENER),
            ).fetchone()
        return row is not None and row[0] == len(shop.apis)

    until(listening, deadline_s=30, interval=0.2)
    headers, prefix = shop.new_key("after-reconnect")
    committed = _revoke(shop.setup.libpq, prefix)
    for api in shop.apis:
        until(
            lambda api=api: _refused(api, headers), deadline_s=1.0 - (time.monotonic() - committed)
        )
