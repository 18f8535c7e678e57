"""The API as a real process (`personalize api`) on a database of its own, for tests
of what only a running process shows: its caches, its listener, its start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from tests import support

CLI = [sys.executable, "-m", "service.cli"]


@dataclass
class ApiProcess:
    base: str
    log: Path
    process: subprocess.Popen[bytes]

    def decide(self, headers: dict[str, str], **body: object) -> httpx.Response:
        body.setdefault("placements", ["homepage_hero"])
        return httpx.post(f"{self.base}/v1/decisions", json=body, headers=headers, timeout=30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@dataclass
class Setup:
    env: dict[str, str]
    url: str  # SQLAlchemy URL of the database
    apis: list[ApiProcess] = field(default_factory=list)

    @property
    def libpq(self) -> str:
        return support.libpq_url(self.url)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def key(self, *scopes: str, name: str = "shop") -> dict[str, str]:
        return support.cli_key(self.env, *scopes, name=name)

    def start_api(self, tmp: Path, **extra: str) -> ApiProcess:
        port = support.free_port()
        env = {**self.env, **extra, "PORT": str(port)}
        api = start(env, tmp / f"api-{port}.log")
        self.apis.append(api)
        return api

    def stop(self) -> None:
        for api in self.apis:
            api.stop()


def launch(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`personalize COMMAND` as a process of its own (a session: stopping it stops its
    children), its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [*CLI, command], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start(env: dict[str, str], log: Path, *, timeout: float = 90) -> ApiProcess:
    """The API on `env`'s PORT, once /healthz answers; its log's tail if it never does."""
    api = ApiProcess(f"http://127.0.0.1:{env['PORT']}", log, launch("api", env, log))
    try:
        support.wait_for(lambda: _up(api.base), timeout=timeout)
    except AssertionError as exc:
        api.stop()
        raise AssertionError(f"{exc}\n{api.tail()}") from None
    return api


@contextmanager
def running(env: dict[str, str], log: Path, *, timeout: float = 90) -> Iterator[ApiProcess]:
    """The API on `env`'s PORT while the block runs."""
    api = start(env, log, timeout=timeout)
    try:
        yield api
    finally:
        api.stop()


def setup(url: str, tmp: Path, *, rules_dir: Path, **settings: str) -> Setup:
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL",)}
    env.update(
        DATABASE_URL=url,
        DATA_DIR=str(tmp / "data"),
        RULES_DIR=str(rules_dir),
        RULES_WATCH="false",
        **settings,
    )
    return Setup(env, url)


def _up(base: str) -> bool | None:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200 or None
    except httpx.HTTPError:
        return None


def until(probe: object, *, deadline_s: float, interval: float = 0.01) -> float:
    """Seconds until `probe()` is true, polled without sleeping longer than `interval`;
    AssertionError once `deadline_s` has passed."""
    started = time.monotonic()
    while True:
        if probe():  # type: ignore[operator]
            return time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            raise AssertionError(f"not within {deadline_s} s")
        time.sleep(interval)


def database_name(url: str) -> str:
    with psycopg.connect(support.libpq_url(url)) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
    assert name is not None
    return str(name[0])
