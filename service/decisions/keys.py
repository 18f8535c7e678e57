"""The API keys the decision endpoint has checked, and how a change reaches them.

Each API process keeps the keys it has checked, so a known key costs no query. A
trigger on `api_keys` sends a notification in the transaction that revokes (changes,
deletes) a key, and every API process listens on a connection of its own: when one
arrives the process forgets every key it knows, and the next request with a key
checks it again. A revocation takes effect when it commits, within milliseconds.

The listener's connection can be lost. Until it is back (and answering), a key
checked more than FALLBACK_S ago is checked again with the request's read; when it is
back the cache is emptied, since a notification may have been missed meanwhile. A
request whose key cannot be checked at all (the database away) is answered only if the
key was valid at its last check in this process.

The same connection hears `rule_deployments`: the process drops the snapshots read
under the previous rules and compiles the new ones before a request needs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psycopg
import structlog

log = structlog.get_logger(__name__)

KEYS_CHANNEL = "api_keys"
RULES_CHANNEL = "rule_deployments"
APPLICATION_NAME = "personalize-invalidation"  # in pg_stat_activity
FALLBACK_S = 1.0  # without a live listener, a key check is trusted this long
MAX_AGE_S = 300.0  # with one, this long (a check costs one query per key)
HEARTBEAT_S = 0.25  # the listener proves its connection this often
LIVE_S = 0.75  # and is trusted this long after a proof (the proof's time included)
RETRY_S = (0.2, 5.0)  # reconnection backoff, first and longest


class KeyCache:
    """key hash → (scopes, when checked). Used from the event loop only."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[frozenset[str], float]] = {}
        self._generation = 0
        self._live_until = 0.0  # the listener is known to hear notifications until then

    def fresh(self, key_hash: str) -> frozenset[str] | None:
        """The key's scopes if its check can be trusted now; None: check it."""
        hit = self._entries.get(key_hash)
        if hit is None:
            return None
        now = time.monotonic()
        age = now - hit[1]
        if age < FALLBACK_S or (age < MAX_AGE_S and now < self._live_until):
            return hit[0]
        return None

    def last_known(self, key_hash: str) -> frozenset[str] | None:
        """The scopes of the key's last check, however old (None: never checked, or
        forgotten since a notification)."""
        hit = self._entries.get(key_hash)
        return hit[0] if hit else None

    def begin(self) -> tuple[int, float]:
        """Taken before a check: a result whose check began before the cache was
        emptied is not kept."""
        return self._generation, time.monotonic()

    def keep(self, key_hash: str, scopes: frozenset[str], begun: tuple[int, float]) -> None:
        generation, at = begun
        if scopes and generation == self._generation:
            self._entries[key_hash] = (scopes, at)
        elif not scopes:
            self._entries.pop(key_hash, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def live(self, until: float) -> None:
        self._live_until = until

    def down(self) -> None:
        self._live_until = 0.0

    @property
    def listening(self) -> bool:
        return time.monotonic() < self._live_until


class Listener:
    """LISTEN on a connection of its own, reconnecting with backoff; runs as a task on
    the API's event loop until cancelled."""

    def __init__(
        self,
        conninfo: str,
        *,
        keys: KeyCache,
        rules_changed: Callable[[bool], None],
    ) -> None:
        self.conninfo = conninfo
        self.keys = keys
        self.rules_changed = rules_changed  # argument: a deployment was notified
        self._was_up = True  # log the first failure, and each recovery, once
        self.stopped = False

    async def run(self) -> None:
        delay = RETRY_S[0]
        while not self.stopped:
            try:
                await self._session()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self.keys.down()
                if self._was_up:
                    log.warning("invalidation_listener_lost", error_type=type(exc).__name__)
                self._was_up = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_S[1])
            if self.keys.listening:
                delay = RETRY_S[0]

    async def _session(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=2,
            application_name=APPLICATION_NAME,
        )
        async with conn:
            await conn.execute(f"LISTEN {KEYS_CHANNEL}")
            await conn.execute(f"LISTEN {RULES_CHANNEL}")
            # Whatever changed while nobody listened is unknown: start afresh.
            self.keys.clear()
            self.rules_changed(False)
            if not self._was_up:
                log.info("invalidation_listener_back")
            self._was_up = True
            while not self.stopped:
                sent = time.monotonic()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the task's
                # cancellation when the query ends at the same moment (a stop that hangs).
                async with asyncio.timeout(LIVE_S):
                    await conn.execute("SELECT 1")
                # Notifications committed before the proof was sent have arrived by now
                # (they are handled just below, before trusting anything on them).
                async for note in conn.notifies(timeout=0):
                    self._handle(note.channel)
                self.keys.live(sent + LIVE_S)
                async for note in conn.notifies(timeout=HEARTBEAT_S):
                    self._handle(note.channel)

    def _handle(self, channel: str) -> None:
        if channel == KEYS_CHANNEL:
            self.keys.clear()
        elif channel == RULES_CHANNEL:
            self.rules_changed(True)
