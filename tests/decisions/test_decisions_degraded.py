"""The decision endpoint when the database is slow or gone: the API runs as a process
whose database connections pass through a TCP proxy the test can cut, and a table lock
the test holds stalls the read. Always 200, the defaults, `degraded: true`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests import support
from tests.support.sinks import TcpProxy

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[2] / "rules"
# Above the default, so that a busy test machine does not make healthy answers late;
# the lock below is held for as long as the request would wait without a budget.
BUDGET_MS = 300


@dataclass
class Api:
    base: str
    key: dict[str, str]
    direct: str  # the database, not through the proxy
    proxy: TcpProxy
    log: Path

    def healthy(self) -> dict:
        try:
            return support.wait_for(lambda: _healthy(self), timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()[-4000:]}") from None

    def decide(self, **body: object) -> tuple[httpx.Response, float]:
        body.setdefault("placements", ["homepage_hero", "cart_drawer"])
        started = time.perf_counter()
        response = httpx.post(f"{self.base}/v1/decisions", json=body, headers=self.key, timeout=30)
        return response, time.perf_counter() - started


@pytest.fixture(scope="module")
def api(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    url = make_database("degraded")
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")  # the embedded server listens on a Unix socket
    port = parsed.port or 5432
    if isinstance(socket_dir, str):
        proxy = TcpProxy(f"{socket_dir}/.s.PGSQL.{port}")
    else:
        proxy = TcpProxy((parsed.host or "127.0.0.1", port))
    proxy.start()
    through = (
        parsed.set(host="127.0.0.1", port=proxy.port)
        .difference_update_query(["host", "port"])
        .render_as_string(hide_password=False)
    )
    tmp = tmp_path_factory.mktemp("degraded")
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "DATABASE_URL")}
    env.update(DATA_DIR=str(tmp / "data"), RULES_DIR=str(SHIPPED), RULES_WATCH="false")
    cli = [sys.executable, "-m", "service.cli"]
    direct = {**env, "DATABASE_URL": url}
    subprocess.run([*cli, "rules", "reload"], env=direct, check=True, timeout=60)
    key = support.cli_key(direct, "storefront", name="shop")
    port = support.free_port()
    env.update(DATABASE_URL=through, PORT=str(port), DECISION_BUDGET_MS=str(BUDGET_MS))
    log = tmp / "api.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*cli, "api"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        support.wait_for(lambda: _up(base), timeout=60)
        yield Api(base, key, support.libpq_url(url), proxy, log)
    finally:
        server.terminate()
        server.wait(timeout=30)
        proxy.stop()


def _up(base: str) -> bool | None:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200 or None
    except httpx.HTTPError:
        return None


def _healthy(api: Api) -> dict | None:
    response, _ = api.decide()
    body = response.json()
    return None if body["degraded"] else body


def test_a_locked_table_gives_the_defaults_within_the_budget(api: Api) -> None:
    api.healthy()  # the key is now known
    with psycopg.connect(api.direct) as conn:
        conn.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")  # held until the end
        response, seconds = api.decide(user_id="someone")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["degraded"] is True
        assert body["placements"]["homepage_hero"]["content"]["source"] == "default"
        # The lock is held until this block ends: without the budget the request would
        # still be waiting (until its 30 s client timeout).
        assert seconds < 3.0, seconds
        time.sleep(0.5)
        conn.rollback()
    api.healthy()


def test_a_database_that_is_gone_gives_the_defaults_and_recovers(api: Api) -> None:
    api.healthy()
    api.proxy.stop()
    try:
        for _ in range(3):  # pooled connections cut, then new ones refused
            response, seconds = api.decide(user_id="someone")
            assert response.status_code == 200, response.text
            assert response.json()["degraded"] is True
            assert seconds < 2.0, seconds
        # A key the process has not seen cannot be checked now: only the defaults,
        # which are the same for everyone, are served.
        stranger = httpx.post(
            f"{api.base}/v1/decisions",
            json={"placements": ["homepage_hero"]},
            headers={"Authorization": "Bearer pk_unseen"},
            timeout=30,
        )
        # A key this process has never checked cannot be checked now: 503, never an
        # answer (it was 200 with the defaults, so an unknown key was served).
        assert stranger.status_code == 503
        assert int(stranger.headers["retry-after"]) >= 1
    finally:
        api.proxy.start()
    api.healthy()
    unknown = httpx.post(
        f"{api.base}/v1/decisions",
        json={"placements": ["homepage_hero"]},
        headers={"Authorization": "Bearer pk_unseen"},
        timeout=30,
    )
    assert unknown.status_code == 401
