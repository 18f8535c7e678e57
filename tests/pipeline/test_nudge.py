from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service import worker
from service.app import create_app
from service.worker import Nudger, nudge_after_commit

TASK = "stage.resolve"


class Recorder:
    """Stands in for the nudger's broker side: which tasks were nudged."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def nudge(self, name: str) -> None:
        self.sent.append(name)


@pytest.fixture
def nudged(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(worker, "_nudger", recorder)
    return recorder


def test_a_released_savepoint_does_not_send_the_nudge_early(
    session: Session, nudged: Recorder
) -> None:
    nudge_after_commit(session, TASK)
    with session.begin_nested():
        pass  # released: the transaction itself has not committed
    assert nudged.sent == []
    assert session.info.get("nudges") == {TASK}
    with session.begin_nested() as inner:
        inner.rollback()  # rolled back: the transaction's own nudge stays pending
    assert nudged.sent == []
    assert session.info.get("nudges") == {TASK}
    session.commit()
    assert nudged.sent == [TASK]  # sent once, when the transaction committed
    assert not session.info.get("nudges")


def test_a_rolled_back_transaction_sends_no_nudge(session: Session, nudged: Recorder) -> None:
    session.execute(text("SELECT 1"))
    nudge_after_commit(session, TASK)
    session.rollback()
    assert nudged.sent == []
    assert not session.info.get("nudges")
    session.commit()  # a later commit does not send what was rolled back
    assert nudged.sent == []


class Broker:
    """Stands in for the Celery app: the names of the tasks sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_task(self, name: str) -> None:
        self.sent.append(name)


def test_stopping_a_nudger_sends_what_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Broker()
    monkeypatch.setattr(worker, "get_celery", lambda: broker)
    nudger = Nudger(interval_s=60)
    nudger.nudge("stage.resolve")
    deadline = time.monotonic() + 5
    while not broker.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert broker.sent == ["stage.resolve"]
    nudger.nudge("stage.evaluate")  # held: within the coalescing window of the first
    assert broker.sent == ["stage.resolve"]
    nudger.stop()
    assert broker.sent == ["stage.resolve", "stage.evaluate"]
    nudger.nudge("stage.hand_over")  # stopped: left to the scheduler's sweep
    assert sorted(broker.sent) == ["stage.evaluate", "stage.resolve"]


def test_the_api_lifespan_begins_the_process_nudger_and_ends_it(connection: Connection) -> None:
    with TestClient(create_app()):
        running = worker.nudger()
        assert worker.nudger() is running  # the one the lifespan began, for every commit
    assert worker.nudger() is not running  # ended with the app
