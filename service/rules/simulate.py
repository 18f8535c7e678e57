"""Replay stored events through a rules version, with no side effects, and compare
with the active version: which rules would have acted, for how many customers.

The events go through the service's own evaluation loop, over a store that keeps its
firings log in memory: waiting rules are decided at their due time and cancelled early
by the events that end their absence, as in the service. Approximations (stated in the
report's docs): profiles are read as they are now, not as they were when each event
happened; history windows and absences are read from the stored events, so they are exact.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from service.events import outbox
from service.language.engine import CompiledRuleset, Engine
from service.language.facts import Profile
from service.profiles import facts as profile_facts
from service.rules import repository
from service.rules.loop import Firing, Loop, SetClock
from service.rules.memory import MemoryStore, Replay
from service.rules.store import trigger_of
from service.settings import get_settings


@dataclass
class Report:
    events: int
    # rule id → customers it acted for
    acted: dict[str, set[uuid.UUID]]


def replay(
    session: Session,
    *,
    engine: Engine,
    rulesets: list[CompiledRuleset],
    since: datetime,
    until: datetime,
) -> Report:
    settings = get_settings()
    store = MemoryStore(history=repository.PgStore(session))
    clock = SetClock(since)
    acted: dict[str, set[uuid.UUID]] = defaultdict(set)
    profiles: dict[uuid.UUID, Profile] = {}
    read_at = datetime.now(UTC)  # profiles as they are now, their windows too

    def profile_of(customer: uuid.UUID) -> Profile:
        if customer not in profiles:
            found = profile_facts.read(
                session, [customer], currency=settings.shop_currency, now=read_at
            )
            profiles[customer] = found.get(customer) or Profile(customer_id=customer)
        return profiles[customer]

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
