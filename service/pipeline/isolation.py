"""One item never stops the others: a batch is processed in a savepoint, and when that
raises, each item again in a savepoint of its own; the items that still fail are
handed back to be set aside while the rest of the batch commits.

The fast path costs one savepoint per batch. Losing the database is not an item's
fault: those errors propagate, and the caller's transaction is retried as a whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Connection lost, server shutting down, deadlock or serialization failure: the whole
# transaction is retried later, nothing is set aside.
OUTAGES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


def isolated(
    session: Session, items: Sequence[T], work: Callable[[Sequence[T]], object], *, stage: str
) -> list[tuple[T, Exception]]:
    """Do `work(items)`; if it raises, do `work([item])` for each item on its own.
    Returns each item that failed alone, with its error; whatever `work` did for the
    others is kept."""
    if not items:
        return []
    try:
        with session.begin_nested():
            work(items)
        return []
    except OUTAGES:
        raise
    except Exception as exc:
        log.warning(
            "batch_failed_retrying_each",
            stage=stage,
            items=len(items),
            error_type=type(exc).__name__,
        )
    failed: list[tuple[T, Exception]] = []
    for item in items:
        try:
            with session.begin_nested():
                work([item])
        except OUTAGES:
            raise
        except Exception as exc:
            failed.append((item, exc))
    return failed
