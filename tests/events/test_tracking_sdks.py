"""The real Segment SDKs, unmodified, pointed at a running service: their events land
on the right profiles, and an alias merges two profiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from segment.analytics.client import Client
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from service.profiles.resolution import resolve_pending
from tests import support
from tests.support import api_process

pytestmark = pytest.mark.slow


def calls(events: list[dict]) -> list[str]:
    return sorted(e["type"] + ":" + (e["name"] or "") for e in events)


class Service:
    def __init__(self, base: str, database_url: str, env: dict[str, str]) -> None:
        self.base, self.database_url, self.env = base, database_url, env
        self.admin = self.key("admin")

    def key(self, scope: str) -> str:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "create-api-key",
                "--name",
                "sdk",
                "--scope",
                scope,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip().splitlines()[-1]

    def resolve(self) -> None:
        """What a worker does after each commit (no worker runs beside this server)."""
        engine = create_engine(self.database_url)
        try:
            with Session(engine) as session:
                while resolve_pending(session):
                    session.commit()
                session.commit()
        finally:
            engine.dispose()

    def events(self, ref: str) -> list[dict]:
        response = httpx.get(
            f"{self.base}/v1/profiles/{ref}/events",
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["events"]


@pytest.fixture(scope="module")
def service(make_database: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    url: str = make_database("sdks")  # type: ignore[operator]
    port = support.free_port()
    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    env.update(DATABASE_URL=url, PORT=str(port), API_WORKERS="1")
    log = tmp_path_factory.mktemp("sdks") / "api.log"
    with api_process.running(env, log, timeout=60) as api:
        yield Service(api.base, url, env)


def test_analytics_python_sends_unchanged(service: Service) -> None:
    errors: list[Exception] = []
    analytics = Client(
        service.key("ingest"),
        host=service.base,
        gzip=True,
        upload_size=3,  # several batches
        on_error=lambda error, _: errors.append(error),
    )
    analytics.track(anonymous_id="py-browser", event="Product Viewed", properties={"sku": "s1"})
    analytics.page(anonymous_id="py-browser", name="Home")
    analytics.identify(user_id="py-user", traits={"first_name": "Ann", "email": "ann@py.example"})
    analytics.track(user_id="py-user", event="Product Added", properties={"sku": "s1"})
    analytics.alias(previous_id="py-browser", user_id="py-user")
    analytics.flush()
    analytics.join()
    assert errors == []

    service.resolve()
    events = service.events("user_id:py-user")
    assert calls(events) == [
        "alias:",
        "identify:",
        "page:Home",
        "track:Product Added",
        "track:Product Viewed",
    ]
    # The browsing profile was merged into the user's: it resolves to the same one.
    assert service.events("anonymous_id:py-browser") == events
    assert service.events("email:ann@py.example") == events


NODE_SCRIPT = textwrap.dedent(
    """
    const { Analytics } = require('@segment/analytics-node')
    const analytics = new Analytics({
      writeKey: process.env.WRITE_KEY, host: process.env.HOST, flushAt: 2, maxRetries: 1,
    })
    const errors = []
    analytics.on('error', (err) => errors.push(String(err && (err.reason || err.message || err))))
    analytics.track({
      anonymousId: 'node-browser', event: 'Product Viewed', properties: { sku: 'n1' },
    })
    analytics.identify({ userId: 'node-user', traits: { email: 'bo@node.example' } })
    analytics.page({ anonymousId: 'node-browser', name: 'Cart' })
    analytics.alias({ previousId: 'node-browser', userId: 'node-user' })
    analytics.closeAndFlush().then(() => {
      console.log(JSON.stringify({ errors }))
    })
    """
)


@pytest.fixture(scope="module")
def analytics_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Node.js and npm are not installed: @segment/analytics-node not run")
    folder = tmp_path_factory.mktemp("analytics-node")
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "@segment/analytics-node@2"],
            cwd=folder,
            capture_output=True,
            check=True,
            timeout=180,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"npm could not install @segment/analytics-node: {exc}")
    (folder / "send.js").write_text(NODE_SCRIPT)
    return folder


def test_analytics_node_sends_unchanged(service: Service, analytics_node: Path) -> None:
    done = subprocess.run(
        ["node", "send.js"],
        cwd=analytics_node,
        env={**os.environ, "WRITE_KEY": service.key("ingest"), "HOST": service.base},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"errors": []}, done.stderr

    service.resolve()
    events = service.events("user_id:node-user")
    assert calls(events) == [
        "alias:",
        "identify:",
        "page:Cart",
        "track:Product Viewed",
    ]
    assert service.events("anonymous_id:node-browser") == events
