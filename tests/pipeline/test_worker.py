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
        assert node.startswith(f"{queue}@")

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


@pytest.mark.worker
@pytest.mark.skipif(
    not support.port_open("127.0.0.1", 5672), reason="no RabbitMQ on 127.0.0.1:5672"
)
def test_two_installations_sharing_a_broker_by_their_queue_both_run_workers(
    make_database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One RabbitMQ, one host, two databases with a queue each (BROKER_QUEUE): each
    worker starts and consumes its own queue."""
    rabbit = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    started = []
    nodes: list[str] = []
    try:
        for n in range(2):
            url = make_database(f"shared{n}")
            queue = f"shared-{uuid.uuid4().hex[:8]}"
            env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "DATABASE_URL")}
            env.update(DATABASE_URL=url, BROKER_URL=rabbit, BROKER_QUEUE=queue)
            env.update(HEARTBEAT_INTERVAL_S="1")
            log = tmp_path / f"worker-{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "worker", "--concurrency=1"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started.append((process, url, queue, log))
        for _process, url, queue, log in started:
            engine = create_engine(url)
            try:
                # The worker's own heartbeat, sent to its queue by this test.
                monkeypatch.setenv("DATABASE_URL", url)
                monkeypatch.setenv("BROKER_URL", rabbit)
                clear_caches()
                get_celery().send_task("periodic.heartbeat", queue=queue)
                node = support.wait_for(lambda e=engine: _heartbeat_node(e), timeout=60)
            except AssertionError:
                raise AssertionError(log.read_text()[-3000:]) from None
            finally:
                engine.dispose()
            nodes.append(node)
        assert [process.poll() for process, *_ in started] == [None, None]
        # Each named after its queue: they no longer share the node's control queue.
        assert [node.split("@")[0] for node in nodes] == [queue for _, _, queue, _ in started]
    finally:
        monkeypatch.undo()
        clear_caches()
        for process, *_ in started:
            process.terminate()
        for process, *_ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
