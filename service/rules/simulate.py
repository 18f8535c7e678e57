"""Replay stored events through a rules version, with no side effects, and compare
with the active version: which rules would have acted, for how many customers, and
for whom.

The events go through the service's own evaluation loop, over a store that keeps its
firings log in memory: waiting rules are decided at their due time and cancelled early
by the events that end their absence, as in the service. Approximations (stated in the
report's docs): profiles are read as they are now, not as they were when each event
happened; history windows and absences are read from the stored events, so they are exact.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from service.events import outbox
from service.language.engine import CompiledRuleset, Engine
from service.language.facts import Profile
from service.profiles import facts as profile_facts
from service.rules import repository
from service.rules.loop import Firing, Loop, SetClock
from service.rules.memory import History, MemoryStore, Replay
from service.rules.store import trigger_of
from service.settings import get_settings


@dataclass
class Report:
    events: int
    # rule id → customers it acted for
    acted: dict[str, set[uuid.UUID]]


@dataclass(frozen=True)
class RuleReach:
    rule_id: str
    files: int  # customers the files' rules would have acted for
    live: int  # customers the live rules would have acted for

    @property
    def change(self) -> int:
        return self.files - self.live


@dataclass(frozen=True)
class Comparison:
    """The files and the live rules replayed over the same events."""

    since: datetime
    until: datetime
    events: int
    files: Report
    live: Report

    def rows(self) -> list[RuleReach]:
        ids = sorted(set(self.files.acted) | set(self.live.acted))
        return [
            RuleReach(i, len(self.files.acted.get(i, ())), len(self.live.acted.get(i, ())))
            for i in ids
        ]

    def reached(self, rule_id: str) -> list[tuple[uuid.UUID, bool, bool]]:
        """Every customer the rule acts for under the files or live: (customer, by the
        files, live), in customer id order (stable across runs, for paging)."""
        files = self.files.acted.get(rule_id, set())
        live = self.live.acted.get(rule_id, set())
        return [(c, c in files, c in live) for c in sorted(files | live)]

    def as_dict(self) -> dict[str, Any]:
        """What a deployment records of the backtest that preceded it."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "events": self.events,
            "rules": {r.rule_id: {"files": r.files, "live": r.live} for r in self.rows()},
        }


@dataclass
class CachedHistory:
    """The stored history's answers, kept for the next replay over the same events:
    they do not depend on the rules asking, so the second replay of a comparison asks
    the database only what rules that changed ask."""

    history: History
    _counts: dict[tuple[Any, ...], int] = field(default_factory=dict)
    _firsts: dict[tuple[Any, ...], tuple[str, datetime] | None] = field(default_factory=dict)

    def count(
        self,
        *,
        customer: uuid.UUID,
        event: str,
        since: datetime,
        until: datetime,
        same: dict[str, Any] | None,
    ) -> int:
        key = (customer, event, since, until, _frozen(same))
        if key not in self._counts:
            self._counts[key] = self.history.count(
                customer=customer, event=event, since=since, until=until, same=same
            )
        return self._counts[key]

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
        key = (customer, tuple(events), since, until, _frozen(same), exclude)
        if key not in self._firsts:
            self._firsts[key] = self.history.first_of(
                customer=customer,
                events=events,
                since=since,
                until=until,
                same=same,
                exclude=exclude,
            )
        return self._firsts[key]


def _frozen(same: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((same or {}).items()))


def compare(
    session: Session,
    *,
    engine: Engine,
    files: list[CompiledRuleset],
    live: list[CompiledRuleset],
    since: datetime,
    until: datetime,
) -> Comparison:
    """Replay `since` to `until` through the files and through the live rules."""
    history = CachedHistory(repository.PgStore(session))
    profiles: dict[uuid.UUID, Profile] = {}
    new = replay(
        session,
        engine=engine,
        rulesets=files,
        since=since,
        until=until,
        history=history,
        profiles=profiles,
    )
    old = replay(
        session,
        engine=engine,
        rulesets=live,
        since=since,
        until=until,
        history=history,
        profiles=profiles,
    )
    return Comparison(since=since, until=until, events=new.events, files=new, live=old)


def replay(
    session: Session,
    *,
    engine: Engine,
    rulesets: list[CompiledRuleset],
    since: datetime,
    until: datetime,
    history: History | None = None,
    profiles: dict[uuid.UUID, Profile] | None = None,
) -> Report:
    """Play the stored events of `since` to `until` through `rulesets`; `history` and
    `profiles` may be shared with another replay of the same events."""
    settings = get_settings()
    store = MemoryStore(history=history or repository.PgStore(session))
    clock = SetClock(since)
    acted: dict[str, set[uuid.UUID]] = defaultdict(set)
    known = profiles if profiles is not None else {}
    read_at = datetime.now(UTC)  # profiles as they are now, their windows too

    def profile_of(customer: uuid.UUID) -> Profile:
        if customer not in known:
            found = profile_facts.read(
                session, [customer], currency=settings.shop_currency, now=read_at
            )
            known[customer] = found.get(customer) or Profile(customer_id=customer)
        return known[customer]

    def fired(firing: Firing) -> None:
        acted[firing.rule_id].add(firing.customer_id)

    loop = Loop(
        engine=engine,
        rulesets=rulesets,
        store=store,
        clock=clock,
        fired=fired,
        consent_defaults=settings.consent_defaults,
    )
    play = Replay(loop=loop, store=store, clock=clock, profile_of=profile_of)
    count = 0
    for event in outbox.events_between(session, since=since, until=until):
        count += 1
        play.play(trigger_of(event))
    play.run_due(until=until)
    return Report(events=count, acted=dict(acted))
