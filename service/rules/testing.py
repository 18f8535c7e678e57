"""Run the tests written inside rule files, with a fake clock and in-memory history.

Each test starts from the profile it gives, plays its events at their relative times,
runs waiting rules when the clock reaches their due time (so a checkout before then
cancels them), and compares which rules acted, and when, with `expect`. The test's
customer is bucketed into experiments like any other, unless the test names its variants
(`variants:`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from service.experiments.declared import catalogue
from service.language.engine import CompiledRuleset, Engine
from service.language.facts import TriggerEvent, stored_filter, trigger_name
from service.language.files import RuleTest, TestDecision
from service.language.given import START, GivenProfile
from service.language.loader import LoadedRuleset
from service.language.schema import action_kind, parse_duration, placement_key
from service.rules.loop import Firing, Loop, SetClock
from service.rules.memory import EventLog, MemoryStore, Replay, StoredEvent

CUSTOMER = uuid.UUID(int=1)


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
        shown = _decide(
            test.decide,
            ruleset,
            profile,
            engine=engine,
            defaults=consent_defaults,
            pinned=test.variants,
        )
        return TestResult(file=file, name=test.name, failures=_compare(test, shown), acted=shown)
    log = EventLog()
    store = MemoryStore(history=log)
    clock = SetClock(START)
    acted: list[tuple[str, timedelta]] = []

    def fired(firing: Firing) -> None:
        if firing.actions:  # a rule whose variant sends nothing (a control group) has not acted
            acted.append((firing.rule_id, firing.at - START))

    loop = Loop(
        engine=engine,
        rulesets=[ruleset],
        store=store,
        clock=clock,
        fired=fired,
        consent_defaults=consent_defaults,
        pinned=test.variants or None,
    )
    replay = Replay(loop=loop, store=store, clock=clock, profile_of=lambda _customer: profile)
    for number, item in enumerate(sorted(test.events, key=lambda e: parse_duration(e.at)), 1):
        now = START + parse_duration(item.at)
        type_, name = _stored_as(item.event)
        replay.run_due(before=now)
        log.events.append(StoredEvent(number, type_, name, now, item.properties))
        trigger = TriggerEvent(
            id=number,
            customer_id=CUSTOMER,
            source="test",
            type=type_,
            name=name,
            occurred_at=now,
            properties=item.properties,
            context=item.context,
        )
        replay.play(trigger)
    replay.run_due()
    return TestResult(file=file, name=test.name, failures=_compare(test, acted), acted=acted)


def _decide(
    decide: TestDecision,
    ruleset: CompiledRuleset,
    profile: GivenProfile,
    *,
    engine: Engine,
    defaults: dict[str, bool],
    pinned: dict[str, str],
) -> list[tuple[str, timedelta]]:
    """The rules of this file whose content or offers the placement would show, as the
    decision endpoint chooses: the content of the highest-priority match (ties by rule
    id), and the offers of every match. An experiment on the placement that the test's
    customer is in may show its variant's content instead (no rule's), or, held out or
    suppressed, the default (no rule at all)."""
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
    for declared in catalogue([ruleset]).for_placement(decide.placement):
        arm = declared.arm(str(CUSTOMER), segments=facts["segments"], now=START, pinned=pinned)
        if arm is not None and arm.suppressed:
            return []
        if arm is not None and arm.changes.content:
            content = None
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
