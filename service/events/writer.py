"""Group commit for webhooks: deliveries that arrive together are stored together.

Each delivery must be committed before its 2xx. Committing each in its own transaction
costs a round trip for BEGIN, one for the insert, one for COMMIT and a WAL flush, and
that, not the request's own work, bounds a process at a few hundred deliveries a
second. Here a request hands its delivery to the writer and waits; while one group is
being written, the next arrive and are written together, in one transaction, once the
first is done. An idle service writes a lone delivery at once, so nothing waits for a
group to fill.

If a group's transaction fails, each of its deliveries is written again on its own,
so a delivery the database refuses fails alone and the others are still acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from service import db
from service.events.intake import receive_webhooks
from service.events.repository import Received
from service.vocabulary import DeliveryStatus

log = structlog.get_logger(__name__)

Result = tuple[DeliveryStatus, int]


class DeliveryWriter:
    """One per app; `submit` returns once the delivery is committed."""

    def __init__(self, *, max_group: int = 200, max_group_bytes: int = 8 << 20) -> None:
        self.max_group = max_group
        self.max_group_bytes = max_group_bytes
        self._waiting: list[tuple[Received, asyncio.Future[Result]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._group_size = 0

    @property
    def waiting(self) -> int:
        """Deliveries waiting for the group being written."""
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Deliveries submitted and not yet answered."""
        return len(self._waiting) + self._group_size

    async def submit(self, delivery: Received) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery, future))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_all())
        return await future

    def _next_group(self) -> list[tuple[Received, asyncio.Future[Result]]]:
        size = taken = 0
        for delivery, _ in self._waiting[: self.max_group]:
            size += len(delivery.body)
            if taken and size > self.max_group_bytes:
                break
            taken += 1
        group = self._waiting[:taken]
        del self._waiting[:taken]
        return group

    async def _write_all(self) -> None:
        group: list[tuple[Received, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                group = self._next_group()
                self._group_size = len(group)
                try:
                    results = await run_in_threadpool(write, [d for d, _ in group])
                except Exception as exc:  # a defect: fail this group, keep serving
                    results = [exc] * len(group)
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except asyncio.CancelledError:  # shutting down: nobody is left to answer
            for _, future in group + self._waiting:
                future.cancel()
            raise
        finally:
            self._writing = None
            self._group_size = 0


def write(deliveries: Sequence[Received]) -> list[Result | Exception]:
    """Store deliveries in one transaction; if it fails, each in its own."""
    try:
        with db.transaction() as session:
            return list(receive_webhooks(session, deliveries=deliveries))
    except DBAPIError as exc:
        if len(deliveries) == 1:
            return [exc]
        log.warning("delivery_group_failed", deliveries=len(deliveries), exc_info=True)
    results: list[Result | Exception] = []
    for delivery in deliveries:
        try:
            with db.transaction() as session:
                results.extend(receive_webhooks(session, deliveries=[delivery]))
        except DBAPIError as exc:
            results.append(exc)
    return results
