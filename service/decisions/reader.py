"""The decision endpoint's read: the API key (when this process has no check of it it
can trust, see keys.py), the customer's snapshot and the active rules' version, as one
task on the event loop that a request waits for at most DECISION_BUDGET_MS. A snapshot
is reused for DECISION_CACHE_TTL_S: a page's widgets often ask for their placements one
request each, at once; the snapshot holds the customer's inbox for every placement, so
it serves them all. Snapshots read under other rules than the active ones are not.

Rules a read finds newer than the process's are compiled once, on a thread, and the
request waits for them beyond the budget: the first request after a deployment is
answered with it (the listener usually has them compiled before)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from service import db
from service.decisions import repository
from service.decisions.keys import KeyCache, Listener
from service.decisions.repository import Snapshot
from service.ruleset.runtime import RUNTIME, Active
from service.settings import get_settings

log = structlog.get_logger(__name__)

COMPILE_WAIT_S = 10.0  # past this, new rules still compiling: the defaults, degraded
STOP_WAIT_S = 5.0  # the listener's end at shutdown


@dataclass(frozen=True)
class _Read:
    scopes: frozenset[str] | None  # None: no key checked in this read (it was cached)
    snapshot: Snapshot


class Reader:
    """The read, as a task on the event loop, waited for at most the budget. A task
    still running then (a slow database) is left to end on its own: the server cancels
    its query at the same budget, and a wait for a pooled connection ends then too."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self.pool = pool
        self.keys = KeyCache()
        self._listener: asyncio.Task[None] | None = None
        self._listening: Listener | None = None
        self._compiling: asyncio.Future[Active] | None = None
        self._rules_generation = 0  # a snapshot read across a rules change is not kept
        # (customer id, identity) → (snapshot, monotonic expiry); oldest first.
        self._snapshots: dict[tuple[Any, ...], tuple[Snapshot, float]] = {}
        self._inflight: dict[tuple[Any, ...], asyncio.Task[_Read]] = {}
        self._files: Active | None = None
        self._degraded_count: dict[str, int] = {}
        self._degraded_logged = 0.0

    async def start(self) -> None:
        """Listen for key and rule changes (keys.py), on a connection of its own."""
        conninfo = self.pool.conninfo  # the pool's server and credentials (open_pool)
        assert isinstance(conninfo, str)
        self._listening = Listener(conninfo, keys=self.keys, rules_changed=self._rules_changed)
        self._listener = asyncio.create_task(self._listening.run(), name="decisions-listener")

    async def stop(self) -> None:
        if self._listener is None or self._listening is None:
            return
        self._listening.stopped = True
        self._listener.cancel()
        done, _ = await asyncio.wait({self._listener}, timeout=STOP_WAIT_S)
        if not done:
            log.warning("decisions_listener_not_stopped")

    async def read(self, **kwargs: Any) -> _Read | None:
        hit = self._cached(**kwargs)
        if hit is not None:
            return hit
        task = self._task(**kwargs)
        budget = get_settings().decision_budget_ms / 1000
        done, _ = await asyncio.wait({task}, timeout=budget)
        if not done:
            self._degraded("budget")
            return None
        if task.exception() is not None:
            self._degraded(type(task.exception()).__name__)
            return None
        return task.result()

    def _task(self, **kwargs: Any) -> asyncio.Task[_Read]:
        """The read for this customer: one already on its way (a page's other widgets
        asking at the same moment), or a new one. A read that checks a key is never
        shared: its answer is for that key."""
        key = (kwargs["customer_id"], kwargs["identity"])
        shared = kwargs["key_hash"] is None
        task = self._inflight.get(key) if shared else None
        if task is None:
            task = asyncio.create_task(self._read(**kwargs))
            task.add_done_callback(_retrieve)
            if shared:
                self._inflight[key] = task
                task.add_done_callback(lambda done: self._inflight.pop(key, None))
        return task

    def _cached(
        self,
        *,
        key_hash: str | None,
        customer_id: uuid.UUID | None,
        identity: tuple[str, str] | None,
    ) -> _Read | None:
        """A snapshot read within the TTL, when the key need not be checked either."""
        if key_hash is not None or get_settings().decision_cache_ttl_s <= 0:
            return None
        hit = self._snapshots.get((customer_id, identity))
        if hit is None or hit[1] <= time.monotonic():
            return None
        now = datetime.now(UTC)
        if any(x.expires_at is not None and x.expires_at <= now for x in hit[0].inbox):
            return None  # an offer in it has expired since
        if hit[0].deployment_id != RUNTIME.cached().deployment_id:
            return None  # the rules changed since
        return _Read(None, hit[0])

    def _keep(self, key: tuple[Any, ...], snapshot: Snapshot, generation: int) -> None:
        settings = get_settings()
        if settings.decision_cache_ttl_s <= 0 or generation != self._rules_generation:
            return
        self._snapshots.pop(key, None)
        self._snapshots[key] = (snapshot, time.monotonic() + settings.decision_cache_ttl_s)
        while len(self._snapshots) > settings.decision_cache_size:
            del self._snapshots[next(iter(self._snapshots))]

    def _degraded(self, reason: str) -> None:
        # At most one line a second: under overload a line per answer would add to it
        # (and a full log pipe blocks the event loop). Each answer is in the decision log.
        self._degraded_count[reason] = self._degraded_count.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._degraded_logged >= 1.0:
            log.warning("decisions_degraded", counts=self._degraded_count)
            self._degraded_count, self._degraded_logged = {}, now

    async def _read(
        self,
        *,
        key_hash: str | None,
        customer_id: uuid.UUID | None,
        identity: tuple[str, str] | None,
    ) -> _Read:
        begun, generation = self.keys.begin(), self._rules_generation
        async with self.pool.connection() as conn:
            scopes = None
            if key_hash is not None:
                scopes = await repository.key_scopes(conn, key_hash)
                self.keys.keep(key_hash, scopes, begun)
            snapshot = await repository.snapshot(
                conn,
                customer_id=customer_id,
                identity=identity,
                currency=get_settings().shop_currency,
            )
        self._keep((customer_id, identity), snapshot, generation)
        return _Read(scopes, snapshot)

    async def rules_for(self, deployment_id: int | None) -> Active | None:
        """The compiled rules of this deployment (or a newer one), compiled now if they
        are not yet: one compile at a time, on a thread, shared by every request that
        waits for it. None if that does not finish within COMPILE_WAIT_S."""
        for _ in range(2):  # one compile may be of an older deployment, under way
            active = RUNTIME.cached()
            if active.deployment_id == deployment_id:
                return active
            try:
                async with asyncio.timeout(COMPILE_WAIT_S):
                    await asyncio.shield(self._compile())
            except Exception as exc:  # the defaults are served; the next request tries again
                log.warning("decisions_rules_unavailable", error_type=type(exc).__name__)
                return None
        return RUNTIME.cached()  # newer still than the read's: a deployment in between

    def _compile(self) -> asyncio.Future[Active]:
        if self._compiling is None or self._compiling.done():
            self._compiling = asyncio.ensure_future(asyncio.to_thread(_refresh_rules))
            self._compiling.add_done_callback(_retrieve)
        return self._compiling

    def _rules_changed(self, notified: bool) -> None:
        """From the listener: snapshots read under other rules are not served again; a
        notified deployment is compiled now, before requests ask for it."""
        self._snapshots.clear()
        self._rules_generation += 1
        if notified:
            self._compile()

    def prepare(self) -> None:
        """Compile the rule files on disk: what is served if the database is away before
        the process has ever read the active rules."""
        self._files = RUNTIME.from_files(get_settings().rules_dir)

    def rules_without_database(self) -> Active:
        active = RUNTIME.cached()
        if active.deployment_id is not None:
            return active
        if self._files is None:
            self.prepare()
        assert self._files is not None
        return self._files


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a late failure, after the answer went, is not "never retrieved"


def _refresh_rules() -> Active:
    with db.transaction() as session:
        return RUNTIME.active(session)
