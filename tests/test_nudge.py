from __future__ import annotations

from sqlalchemy.orm import Session

from service.worker import nudge_after_commit


def test_a_released_savepoint_does_not_send_the_nudge_early(session: Session) -> None:
    nudge_after_commit(session, "service.events.tasks.resolve_pending")
    with session.begin_nested():
        pass  # released: the transaction itself has not committed
    assert session.info.get("nudges") == {"service.events.tasks.resolve_pending"}
    with session.begin_nested() as inner:
        inner.rollback()  # rolled back: the transaction's own nudge stays pending
    assert session.info.get("nudges") == {"service.events.tasks.resolve_pending"}
    session.commit()
    assert not session.info.get("nudges")
