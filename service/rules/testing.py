"""Run the tests written inside rule files, with a fake clock and in-memory history.

Each test starts from the profile it gives, plays its events at their relative times,
runs waiting rules when the clock reaches their due time (so a checkout before then
cancels them), and compares which rules acted, and when, with `expect`.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.language.engine import CompiledRuleset, Engine
from service.language.facts import (
    TriggerEvent,
    matches_same,
    stored_filter,
    trigger_name,
)
from service.language.files import RuleTest, TestDecision
from service.language.given import START, GivenProfile
from service.language.loader import LoadedRuleset
from service.language.schema import action_kind, parse_duration, placement_key
from service.rules import evaluator

CUSTOMER = uuid.UUID(int=1)


@dataclass
class _Stored:
    id: int
    type: str
    name: str | None
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass
class MemoryStore:
    """History for one test's customer: its events and its rules' outcomes."""

    events: list[_Stored] = field(default_factory=list)
    acted: dict[int, tuple[str, datetime]] = field(default_factory=dict)  # id → (group, at)

    def _named(self, name: str) -> list[_Stored]:
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

    def group_acted(
        self, *, customer: uuid.UUID, group: str, since: datetime, exclude: int | None
    ) -> datetime | None:
        times = [
            at for i, (g, at) in self.acted.items() if g == group and at >= since and i != exclude
        ]
        return max(times, default=None)


@dataclass
class TestResult:
    file: str
    name: str
    failures: list[str]
    acted: list[tuple[str, timedelta]]

    @property
    def passed(self) -> bool:
        return not self.failures


def run_file(
    loaded: LoadedRuleset, *, engine: Engine, consent_defaults: dict[str, bool]
) -> list[TestResult]:
    compiled = engine.compile(loaded)
    return [
        _run(loaded.file, test, compiled, engine=engine, consent_defaults=consent_defaults)
        for test in loaded.definition.tests
    ]


def _run(
    file: str,
    test: RuleTest,
    ruleset: CompiledRuleset,
    *,
    engine: Engine,
    consent_defaults: dict[str, bool],
) -> TestResult:
    profile = GivenProfile(test.profile)
    if test.decide is not None:
        shown = _decide(test.decide, ruleset, profile, engine=engine, defaults=consent_defaults)
        return TestResult(file=file, name=test.name, failures=_compare(test, shown), acted=shown)
    store = MemoryStore()
    ids = itertools.count(1)
    waiting: list[tuple[datetime, int, TriggerEvent, str]] = []  # due, firing id, trigger, rule
    acted: list[tuple[str, timedelta]] = []

    def run_due(before: datetime | None) -> None:
        """Decide the waits due before `before`: one due at the very instant of an event
        is decided after it (the event is inside its window, which includes its end)."""
        waiting.sort(key=lambda w: (w[0], w[1]))
        while waiting and (before is None or waiting[0][0] < before):
            due, firing, trigger, rule_id = waiting.pop(0)
            outcome = evaluator.recheck(
                engine=engine,
                ruleset=ruleset,
                rule_id=rule_id,
                event=trigger,
                profile=profile,
                store=store,
                now=due,
                consent_defaults=consent_defaults,
                firing=firing,
            )
            if outcome.status == "fired":
                acted.append((rule_id, due - START))
                if outcome.group:
                    store.acted[firing] = (outcome.group, due)
            else:
                store.acted.pop(firing, None)

    for item in sorted(test.events, key=lambda e: parse_duration(e.at)):
        now = START + parse_duration(item.at)
        run_due(now)
        type_, name = _stored_as(item.event)
        stored = _Stored(
            id=next(ids), type=type_, name=name, occurred_at=now, properties=item.properties
        )
        store.events.append(stored)
        trigger = TriggerEvent(
            id=stored.id,
            customer_id=CUSTOMER,
            source="test",
            type=type_,
            name=name,
            occurred_at=now,
            properties=item.properties,
            context=item.context,
        )
        for wait in [w for w in waiting if item.event in ruleset.rules[w[3]].cancelled_by]:
            outcome = evaluator.recheck(
                engine=engine,
                ruleset=ruleset,
                rule_id=wait[3],
                event=wait[2],
                profile=profile,
                store=store,
                now=now,
                consent_defaults=consent_defaults,
                firing=wait[1],
            )
            if outcome.status == "cancelled":
                waiting.remove(wait)
                store.acted.pop(wait[1], None)
        for outcome in evaluator.evaluate(
            engine=engine,
            rulesets=[ruleset],
            event=trigger,
            profile=profile,
            store=store,
            now=now,
            consent_defaults=consent_defaults,
        ):
            firing = next(ids)
            if outcome.status in ("fired", "scheduled") and outcome.group:
                store.acted[firing] = (outcome.group, now)
            if outcome.status == "fired":
                acted.append((outcome.rule.rule.id, now - START))
            elif outcome.status == "scheduled":
                waiting.append((outcome.due_at, firing, trigger, outcome.rule.rule.id))
    run_due(None)
    return TestResult(file=file, name=test.name, failures=_compare(test, acted), acted=acted)


def _decide(
    decide: TestDecision,
    ruleset: CompiledRuleset,
    profile: GivenProfile,
    *,
    engine: Engine,
    defaults: dict[str, bool],
) -> list[tuple[str, timedelta]]:
    """The rules of this file whose content or offers the placement would show, as the
    decision endpoint chooses: the content of the highest-priority match (ties by rule
    id), and the offers of every match."""
    key = placement_key(decide.placement)
    facts = profile.facts(now=START, consent_defaults=defaults)
    tree = {"context": decide.context, "profile": facts}
    matched = set(engine.match(ruleset, trigger=key, facts=tree, history={}))
    ranked = sorted(
        (r for r in ruleset.by_trigger.get(key, ()) if r.rule.id in matched),
        key=lambda r: (-r.rule.priority, r.rule.id),
    )
    kinds = {r.rule.id: {action_kind(a) for a in r.rule.actions} for r in ranked}
    content = next((r.rule.id for r in ranked if "content" in kinds[r.rule.id]), None)
    shown = [r.rule.id for r in ranked if r.rule.id == content or "offer" in kinds[r.rule.id]]
    return [(rule_id, timedelta(0)) for rule_id in shown]


def _stored_as(name: str) -> tuple[str, str | None]:
    type_, stored_name = stored_filter(name)
    assert trigger_name(type_, stored_name) == name
    return type_, stored_name


def _compare(test: RuleTest, acted: list[tuple[str, timedelta]]) -> list[str]:
    unmatched = list(acted)
    failures = []
    for expected in test.expect:
        at = parse_duration(expected.at) if expected.at is not None else None
        hit = next((a for a in unmatched if a[0] == expected.rule and at in (None, a[1])), None)
        if hit is None:
            when = f" at {expected.at}" if expected.at else ""
            failures.append(f"expected {expected.rule} to act{when}; acted: {_describe(acted)}")
        else:
            unmatched.remove(hit)
    for rule_id, at in unmatched:
        failures.append(f"{rule_id} acted at {_duration(at)}, which the test does not expect")
    return failures


def _describe(acted: list[tuple[str, timedelta]]) -> str:
    return ", ".join(f"{r} at {_duration(a)}" for r, a in acted) or "nothing"


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
