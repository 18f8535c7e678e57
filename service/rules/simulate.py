"""Replay stored events through a rules version, with no side effects, and compare
with the active version: which rules would have acted, for how many customers.

Approximations (stated in the report's docs): profiles are read as they are now,
not as they were when each event happened; history windows and absences are read
from the stored events, so they are exact.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.events.models import Event
from service.language.engine import CompiledRuleset, Engine
from service.language.facts import Profile
from service.profiles import facts as profile_facts
from service.rules import evaluator, repository
from service.rules.service import trigger_of
from service.settings import get_settings


@dataclass
class _SimStore:
    """Real history from the database; the limits log is the simulation's own."""

    db: repository.PgStore
    acted: dict[int, tuple[uuid.UUID, str, datetime]] = field(default_factory=dict)

    def count(self, **kwargs: Any) -> int:
        return self.db.count(**kwargs)

    def first_of(self, **kwargs: Any) -> tuple[str, datetime] | None:
        return self.db.first_of(**kwargs)

    def group_acted(
        self, *, customer: uuid.UUID, group: str, since: datetime, exclude: int | None
    ) -> datetime | None:
        times = [
            at
            for key, (c, g, at) in self.acted.items()
            if c == customer and g == group and at >= since and key != exclude
        ]
        return max(times, default=None)


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
    store = _SimStore(repository.PgStore(session))
    acted: dict[str, set[uuid.UUID]] = defaultdict(set)
    waiting: list[tuple[datetime, int, Any, CompiledRuleset, str]] = []
    keys = itertools.count(1)
    events = session.scalars(
        select(Event)
        .where(
            Event.customer_id.is_not(None), Event.occurred_at >= since, Event.occurred_at <= until
        )
        .order_by(Event.occurred_at, Event.id)
        .execution_options(yield_per=1000)
    )
    profiles: dict[uuid.UUID, Profile] = {}
    count = 0

    def profile_of(customer: uuid.UUID) -> Profile:
        if customer not in profiles:
            found = profile_facts.read(session, [customer], currency=settings.shop_currency)
            profiles[customer] = found.get(customer) or Profile(customer_id=customer)
        return profiles[customer]

    def run_due(now: datetime) -> None:
        waiting.sort(key=lambda w: (w[0], w[1]))
        while waiting and waiting[0][0] <= now:
            due, key, trigger, ruleset, rule_id = waiting.pop(0)
            outcome = evaluator.recheck(
                engine=engine,
                ruleset=ruleset,
                rule_id=rule_id,
                event=trigger,
                profile=profile_of(trigger.customer_id),
                store=store,
                now=due,
                consent_defaults=settings.consent_defaults,
                firing=key,
            )
            if outcome.status == "fired":
                acted[rule_id].add(trigger.customer_id)
            else:
                store.acted.pop(key, None)

    for event in events:
        count += 1
        trigger = trigger_of(event)
        run_due(trigger.occurred_at)
        for outcome in evaluator.evaluate(
            engine=engine,
            rulesets=rulesets,
            event=trigger,
            profile=profile_of(trigger.customer_id),
            store=store,
            now=trigger.occurred_at,
            consent_defaults=settings.consent_defaults,
        ):
            key = next(keys)
            if outcome.status in ("fired", "scheduled") and outcome.group:
                store.acted[key] = (trigger.customer_id, outcome.group, trigger.occurred_at)
            if outcome.status == "fired":
                acted[outcome.rule.rule.id].add(trigger.customer_id)
            elif outcome.status == "scheduled":
                waiting.append(
                    (outcome.due_at, key, trigger, outcome.ruleset, outcome.rule.rule.id)
                )
    run_due(until)
    return Report(events=count, acted=dict(acted))
