"""The README's run command: everything on the embedded PostgreSQL, then a clean stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from tests import support
from tests.support import api_process


@pytest.mark.slow
def test_serve_runs_api_worker_scheduler_on_embedded_postgres(tmp_path: Path) -> None:
    port = support.free_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    env.update(DATA_DIR=str(data_dir), PORT=str(port), HEARTBEAT_INTERVAL_S="1")
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    serve = api_process.launch("serve", env, log)
    children: list[psutil.Process] = []
    try:

        def ready_with_a_worker() -> dict | None:
            body = httpx.get(f"{base}/readyz", timeout=5).json()
            return body if body.get("live_workers") else None

        body = support.wait_for(ready_with_a_worker, timeout=120, interval=0.5)
        assert body["checks"] == {"database": "ok", "broker": "ok"}
        children = psutil.Process(serve.pid).children(recursive=True)

        # A second command attaches to the same embedded server.
        auth = support.cli_key(env, "admin", name="smoke")
        me = httpx.get(f"{base}/v1/api-keys/me", headers=auth)
        assert me.status_code == 200
        assert me.json()["name"] == "smoke"

        # An event goes in; the worker puts it on a profile after the commit.
        event = {
            "type": "track",
            "event": "Order Completed",
            "userId": "serve-1",
            "properties": {"order_id": "o-1", "total": "12.50", "currency": "EUR"},
        }
        accepted = httpx.post(f"{base}/v1/events", json=event, headers=auth)
        assert accepted.json()["accepted"] == 1, accepted.text

        def resolved() -> dict | None:
            got = httpx.get(f"{base}/v1/profiles/user_id:serve-1", headers=auth, timeout=5)
            return got.json() if got.status_code == 200 else None

        profile = support.wait_for(resolved, timeout=30, interval=0.2)
        assert profile["orders_count"] == 1
        assert profile["spend"][0]["total_spent"] == "12.5"

        # Then rules evaluate it: a first order schedules the welcome an hour later.
        def decided() -> list | None:
            got = httpx.get(
                f"{base}/v1/rules/firings", params={"customer": "user_id:serve-1"}, headers=auth
            )
            return got.json()["items"] or None

        (firing,) = support.wait_for(decided, timeout=30, interval=0.2)
        assert firing["rule_id"] == "first_purchase_welcome"
        assert firing["status"] == "scheduled"

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"still running after stop: {[p.pid for p in alive]}"
        assert not any(str(data_dir) in " ".join(p.cmdline()) for p in _postgres_processes())
    finally:
        if serve.poll() is None:
            serve.kill()
        for child in children:
            if child.is_running():
                child.kill()


def _postgres_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            try:
                proc.cmdline()
                found.append(proc)
            except psutil.NoSuchProcess:
                pass
    return found
