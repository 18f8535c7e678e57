from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from service import worker
from service.worker import nudge_after_commit

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
