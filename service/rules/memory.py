"""The evaluation loop in memory, for the rule files' tests and the simulator: a store
that keeps waiting rules and the limits log in memory (its history in memory too, or
read from the database), and `Replay`, which plays events in time order and decides
each waiting rule at its due time on a clock it moves."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from service.language.facts import TriggerEvent, matches_same, stored_filter
from service.rules.evaluator import Outcome, ProfileFacts
from service.rules.loop import Loop, SetClock, Wait
from service.vocabulary import FiringStatus

ACTING = (FiringStatus.SCHEDULED, FiringStatus.FIRED)


@dataclass
class StoredEvent:
    id: int
    type: str
    name: str | None
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass
class EventLog:
    """History kept in memory: the events played so far (one customer's)."""

    events: list[StoredEvent] = field(default_factory=list)

    def _named(self, name: str) -> list[StoredEvent]:
        type_, stored_name = stored_filter(name)
        return [e for e in self.events if e.type == type_ and stored_name in (None, e.name)]

    def count(
        self,
        *,
        customer: uuid.UUID,
        event: str,
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
    ) -> int:
        return sum(
            1
            for e in self._named(event)
            if since <= e.occurred_at <= until and matches_same(e.properties, same or {})
        )

    def first_of(
        self,
        *,
        customer: uuid.UUID,
        events: list[str],
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
        exclude: int,
    ) -> tuple[str, datetime] | None:
        found = [
            (e.occurred_at, e.id, name)
            for name in events
            for e in self._named(name)
            if since <= e.occurred_at <= until
            and e.id != exclude
            and matches_same(e.properties, same or {})
        ]
        if not found:
            return None
        at, _id, name = min(found)
        return name, at


class History(Protocol):
    """Where a memory store reads events from (an `EventLog`, or the database)."""

    def count(
        self,
        *,
        customer: uuid.UUID,
        event: str,
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
    ) -> int: ...

    def first_of(
        self,
        *,
        customer: uuid.UUID,
        events: list[str],
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
        exclude: int,
    ) -> tuple[str, datetime] | None: ...


@dataclass
class MemoryWait:
    id: int
    customer_id: uuid.UUID
    event_id: int
    ruleset: str
    rule_id: str
    version_id: int | None
    cancel_on: list[str] | None
    trigger: TriggerEvent
    due_at: datetime
    group: str | None
    status: str
    at: datetime  # when it was logged, then when it was decided
    experiments: list[dict[str, Any]] | None = None


@dataclass
class MemoryStore:
    """The firings log in memory over a history; waits come back soonest first."""

    history: History
    log: dict[int, MemoryWait] = field(default_factory=dict)
    _ids: int = 0

    def count(
        self,
        *,
        customer: uuid.UUID,
        event: str,
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
    ) -> int:
        return self.history.count(
            customer=customer, event=event, since=since, until=until, same=same
        )

    def first_of(
        self,
        *,
        customer: uuid.UUID,
        events: list[str],
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
        exclude: int,
    ) -> tuple[str, datetime] | None:
        return self.history.first_of(
            customer=customer, events=events, since=since, until=until, same=same, exclude=exclude
        )

    def group_acted(
        self, *, customer: uuid.UUID, group: str, since: datetime, exclude: int | None
    ) -> datetime | None:
        times = [
            f.at
            for f in self.log.values()
            if f.customer_id == customer
            and f.group == group
            and f.status in ACTING
            and f.at >= since
            and f.id != exclude
        ]
        return max(times, default=None)

    def record(
        self, trigger: TriggerEvent, outcome: Outcome, *, version_id: int | None, now: datetime
    ) -> int | None:
        self._ids += 1
        self.log[self._ids] = MemoryWait(
            id=self._ids,
            customer_id=trigger.customer_id,
            event_id=trigger.id,
            ruleset=outcome.ruleset.name,
            rule_id=outcome.rule.rule.id,
            version_id=version_id,
            cancel_on=sorted(outcome.rule.cancelled_by),
            trigger=trigger,
            due_at=outcome.due_at,
            group=outcome.group,
            status=outcome.status,
            at=now,
            experiments=[arm.as_dict() for arm in outcome.arms] or None,
        )
        return self._ids

    def _scheduled(self) -> list[MemoryWait]:
        waits = [f for f in self.log.values() if f.status == FiringStatus.SCHEDULED]
        return sorted(waits, key=lambda f: (f.due_at, f.id))

    def waiting(self, customer: uuid.UUID, *, event: str) -> Sequence[Wait]:
        return [
            f
            for f in self._scheduled()
            if f.customer_id == customer and (f.cancel_on is None or event in f.cancel_on)
        ]

    def trigger_of(self, wait: Wait) -> TriggerEvent | None:
        return self.log[wait.id].trigger

    def finish(
        self, wait: Wait, *, outcome: Outcome | None, version_id: int | None, now: datetime
    ) -> None:
        kept = self.log[wait.id]
        kept.status = outcome.status if outcome is not None else FiringStatus.CANCELLED
        kept.at = now

    def next_due(self) -> MemoryWait | None:
        scheduled = self._scheduled()
        return scheduled[0] if scheduled else None


@dataclass
class Replay:
    """Events played in time order through a loop over a memory store: before each
    event, the waits due before it are decided, each at its due time."""

    loop: Loop
    store: MemoryStore
    clock: SetClock
    profile_of: Callable[[uuid.UUID], ProfileFacts]

    def play(self, trigger: TriggerEvent) -> list[Outcome]:
        self.run_due(before=trigger.occurred_at)
        self.clock.at = trigger.occurred_at
        return self.loop.evaluate(trigger, self.profile_of(trigger.customer_id))

    def run_due(self, *, before: datetime | None = None, until: datetime | None = None) -> None:
        """Decide the waits due before `before` (one due at the very instant of an event
        is decided after it: the event is inside its window, which includes its end),
        or by `until`, or all of them."""
        while (wait := self.store.next_due()) is not None:
            if before is not None and wait.due_at >= before:
                return
            if until is not None and wait.due_at > until:
                return
            self.clock.at = wait.due_at
            self.loop.decide(wait, self.profile_of(wait.customer_id))
