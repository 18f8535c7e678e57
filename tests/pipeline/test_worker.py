"""A real Celery worker process on each broker the service supports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from service.worker import get_celery
from tests import support
from tests.support import clear_caches


def brokers() -> list[object]:
    rabbit = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    redis = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    return [
        pytest.param(None, id="postgresql"),
        pytest.param(
            rabbit,
            id="rabbitmq",
            marks=pytest.mark.skipif(
                not support.port_open("127.0.0.1", 5672), reason="no RabbitMQ on 127.0.0.1:5672"
            ),
        ),
        pytest.param(
            redis,
            id="redis",
            marks=pytest.mark.skipif(
                not support.port_open("127.0.0.1", 6379), reason="no Redis on 127.0.0.1:6379"
            ),
        ),
    ]


@pytest.mark.worker
@pytest.mark.parametrize("broker", brokers())
def test_worker_process_runs_a_task_and_stops_gracefully(
    broker: str | None, make_database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_database("worker")
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "DATABASE_URL")}
    env["DATABASE_URL"] = url
    if broker:
        env["BROKER_URL"] = broker
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--concurrency=1", f"--queues={queue}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # Send from this process through the same broker, as the API would.
        monkeypatch.setenv("DATABASE_URL", url)
        if broker:
            monkeypatch.setenv("BROKER_URL", broker)
        else:
            monkeypatch.delenv("BROKER_URL", raising=False)
        clear_caches()
        get_celery().send_task("periodic.heartbeat", queue=queue)

        engine = create_engine(url)
        try:
            node = support.wait_for(lambda: _heartbeat_node(engine), timeout=60)
        finally:
            engine.dispose()
        assert node.startswith("celery@")

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        monkeypatch.undo()
        clear_caches()


def _heartbeat_node(engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT hostname FROM worker_heartbeats")).scalar()
