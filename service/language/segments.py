"""Segment definitions, compiled for the rules engine, and evaluated for a customer.

All active segments compile to one durable-rules ruleset with one rule per segment,
on a trigger of their own: one match per customer says every segment they are in.
Count and absence windows end at the evaluation time (`now`), and their values come
from stored events (one grouped query per batch of customers in the service, a list
of events in a segment file's own tests), so both run the same matching.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.language.engine import CompiledRuleset, Engine, Window
from service.language.facts import stored_filter
from service.language.files import RuleFile, SegmentFile, SegmentTest
from service.language.given import START, GivenProfile
from service.language.loader import LoadedRuleset, LoadedSegment
from service.language.schema import (
    AbsentSpec,
    Rule,
    SegmentAction,
    SegmentSpec,
    Trigger,
    parse_duration,
)

TRIGGER = "Segment Check"  # what a segment's rule matches on; no event has this name


@dataclass(frozen=True)
class CompiledSegments:
    ruleset: CompiledRuleset
    segments: dict[str, LoadedSegment]
    windows: tuple[Window, ...]  # of every segment: their values are read in one query

    def match(
        self, engine: Engine, *, profile: dict[str, Any], counts: Mapping[str, int]
    ) -> set[str]:
        """The segments whose conditions hold for this profile and these window counts
        (events in each window, by window key)."""
        history = {w.key: _value(w, counts.get(w.key, 0)) for w in self.windows}
        return set(
            engine.match(self.ruleset, trigger=TRIGGER, facts={"profile": profile}, history=history)
        )


def _value(window: Window, count: int) -> int | bool:
    return count == 0 if window.is_absence else count


def compile_segments(engine: Engine, segments: Iterable[LoadedSegment]) -> CompiledSegments:
    chosen = sorted(segments, key=lambda s: s.name)
    digest = hashlib.sha256("".join(s.content_hash for s in chosen).encode()).hexdigest()
    rules = [_as_rule(s.definition) for s in chosen]
    definition = RuleFile.model_construct(ruleset="segments", version=1, rules=rules, tests=[])
    loaded = LoadedRuleset(file="segments/", source="", content_hash=digest, definition=definition)
    compiled = engine.compile(loaded)
    windows = tuple(w for r in compiled.rules.values() for w in r.windows)
    return CompiledSegments(
        ruleset=compiled,
        segments={s.name: s for s in chosen},
        windows=windows,
    )


def _as_rule(definition: SegmentFile) -> Rule:
    """A segment as a rule: "when these hold, the customer is in it"."""
    return Rule(
        id=definition.segment,
        description=definition.description,
        trigger=Trigger(event=TRIGGER),
        when=definition.when,
        actions=[SegmentAction(segment=SegmentSpec(add=definition.segment))],
    )


def window_bounds(
    windows: Iterable[Window], *, now: datetime
) -> list[tuple[str, str, str | None, datetime]]:
    """Each window as (key, stored type, stored name or None for any, since): it counts
    the customer's events of that type and name in [since, now]."""
    bounds = []
    for window in windows:
        names = window.spec.events if isinstance(window.spec, AbsentSpec) else [window.spec.event]
        since = now - parse_duration(window.spec.within)
        for name in names:
            type_, stored_name = stored_filter(name)
            bounds.append((window.key, type_, stored_name, since))
    return bounds


def counts_from(
    windows: Iterable[Window], events: Iterable[tuple[str, str | None, datetime]], *, now: datetime
) -> dict[str, int]:
    """Window counts from a list of (type, name, occurred_at): what the service's query
    computes, for a segment file's tests."""
    stored = list(events)
    counts: dict[str, int] = {}
    for key, type_, name, since in window_bounds(windows, now=now):
        counts[key] = counts.get(key, 0) + sum(
            1 for t, n, at in stored if t == type_ and (name is None or n == name) and since <= at
        )
    return counts


# --- a segment file's own tests -----------------------------------------------------------


@dataclass
class SegmentTestResult:
    file: str
    name: str
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


def run_tests(
    loaded: LoadedSegment, *, engine: Engine, consent_defaults: dict[str, bool]
) -> list[SegmentTestResult]:
    compiled = compile_segments(engine, [loaded])
    return [
        _run(loaded, test, compiled, engine=engine, consent_defaults=consent_defaults)
        for test in loaded.definition.tests
    ]


def _run(
    loaded: LoadedSegment,
    test: SegmentTest,
    compiled: CompiledSegments,
    *,
    engine: Engine,
    consent_defaults: dict[str, bool],
) -> SegmentTestResult:
    profile = GivenProfile(test.profile).facts(now=START, consent_defaults=consent_defaults)
    stored = [(*stored_filter(e.event), START - parse_duration(e.ago)) for e in test.history]
    counts = counts_from(compiled.windows, stored, now=START)
    inside = loaded.name in compiled.match(engine, profile=profile, counts=counts)
    got = "in" if inside else "out"
    failures = [] if got == test.expect else [f"expected {test.expect}, got {got}"]
    return SegmentTestResult(loaded.file, test.name, failures)
