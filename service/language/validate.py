"""The checks of one file that the schema cannot express: known events, traits, facts
and consent purposes (with the name meant when one is misspelt), facts compared with
values of their kind, ids used once, conditions that can hold, placement rules, and
in-file tests that refer to what the file defines.

Each check yields `(path, message)`: the path of keys and indexes in the file the
message is about, which the loader turns into a line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from service.language import contradictions, experiments, fact_types, facts, suggest
from service.language.files import Expectation, RuleFile, RuleTest, SegmentFile, SegmentTest
from service.language.names import BUILTIN_EVENTS
from service.language.schema import (
    AbsentCondition,
    AbsentSpec,
    Action,
    AllCondition,
    AnyCondition,
    Condition,
    CountCondition,
    CountSpec,
    FactCondition,
    NotCondition,
    Rule,
    TestProfile,
    parse_duration,
)
from service.vocabulary import SEGMENT_EVENTS, Channel

MAX_VERSION = 2**31 - 1  # a `version:` is kept in an integer column

Problem = tuple[tuple[Any, ...], str]  # the path in the file, and what is wrong there
Names = frozenset[str] | set[str]


@dataclass(frozen=True)
class Known:
    """The names a file may use: events and traits (built-in and its own), and the
    consent purposes (None: not checked, e.g. a stored version loaded again)."""

    events: Names
    traits: Names
    purposes: Names | None = None


def _under(prefix: tuple[Any, ...], problems: Iterable[Problem]) -> Iterator[Problem]:
    for path, message in problems:
        yield (*prefix, *path), message


# --- rule files ----------------------------------------------------------------------------


def rule_file(rf: RuleFile, *, purposes: Names | None = None) -> Iterator[Problem]:
    """`purposes`: the consent purposes the file may test (None: any)."""
    events = BUILTIN_EVENTS | set(rf.events)
    known = Known(events, facts.STANDARD_TRAITS | set(rf.traits), purposes)
    yield from _version(rf.version)
    seen: set[str] = set()
    for i, rule in enumerate(rf.rules):
        yield from _under(("rules", i), _rule(rule, seen=seen, known=known))
        seen.add(rule.id)
    yield from experiments.check(rf.experiments, ruleset=rf.ruleset, rules=rf.rules, events=events)
    placements = {r.id: r.trigger.placement for r in rf.rules if r.trigger.placement}
    variants = {e.key: experiments.variant_names(e) for e in rf.experiments}
    for i, test in enumerate(rf.tests):
        checked = _rule_test(test, ids=seen, placements=placements, known=known)
        yield from _under(("tests", i), checked)
        for key, name in test.variants.items():
            if name not in variants.get(key, {name}) or key not in variants:
                names = ", ".join(sorted(variants.get(key, ()))) or "none declared here"
                yield ("tests", i, "variants", key), f"no variant {name!r} of {key!r}; {names}"


def _version(version: int) -> Iterator[Problem]:
    if version > MAX_VERSION:
        yield ("version",), f"version {version} is more than {MAX_VERSION}"


def _rule(rule: Rule, *, seen: set[str], known: Known) -> Iterator[Problem]:
    yield from _version(rule.version)
    if rule.id in seen:
        yield ("id",), f"rule id {rule.id!r} is used twice in this file"
    if rule.trigger.placement is not None:
        yield from _placement_rule(rule)
    elif rule.trigger.event not in known.events:
        yield ("trigger", "event"), _unknown_event(str(rule.trigger.event), known.events)
    yield from _conditions(rule, known)
    for j, action in enumerate(rule.actions):
        yield from _under(("actions", j), _action_references(action, known))
    for name in (rule.delay,) + ((rule.limits.cooldown,) if rule.limits else ()):
        if name is not None:
            parse_duration(name)


def _action_references(action: Action, known: Known) -> Iterator[Problem]:
    """`{{ … }}` in an action's parameters names a fact there is."""
    for ref in facts.references(action):
        problem = suggest.fact_problem(ref, known.traits, known.purposes)
        if problem:
            yield (), f"{{{{ {ref} }}}}: {problem}"


def _unknown_event(name: str, events: Names) -> str:
    advice = "If the shop sends it, list it under `events:` at the top of the file"
    if suggest.closest(name, events) is not None:
        return f"unknown event {name!r}{suggest.hint(name, events)} {advice}"
    return (
        f"unknown event {name!r}; built-in events are {', '.join(sorted(BUILTIN_EVENTS))}. {advice}"
    )


def _placement_rule(rule: Rule) -> Iterator[Problem]:
    """A placement rule is decided while the storefront waits, from the profile and the
    request alone: no event, no history, no waiting, nothing sent."""
    conditions: list[tuple[tuple[Any, ...], BaseModel]] = [
        (("trigger", "where", i), c) for i, c in enumerate(rule.trigger.where)
    ]
    conditions += [(("when", i), c) for i, c in enumerate(rule.when)]
    for path, condition in conditions:
        yield from _under(path, _placement_condition(condition))
    if rule.delay is not None:
        yield ("delay",), "placement rules answer at once: no delay"
    if rule.limits is not None:
        yield ("limits",), "placement rules are chosen by priority: no limits"
    placement = rule.trigger.placement
    for j, action in enumerate(rule.actions):
        yield from _under(("actions", j), _placement_action(action, placement=placement))


def _placement_condition(condition: BaseModel) -> Iterator[Problem]:
    if _mentions(condition, AbsentCondition | CountCondition):
        yield (), "placement rules cannot use count or absent (no history is read)"
    for fact in _fact_paths(condition):
        if fact.startswith("event."):
            yield (), f"{fact}: placement rules see context and profile, not event"


def _placement_action(action: Action, *, placement: str | None) -> Iterator[Problem]:
    """A placement rule's action sets the content of its own placement, or shows an
    offer in the inbox; it reads no event."""
    content = getattr(action, "content", None)
    offer = getattr(action, "offer", None)
    if content is not None and content.placement != placement:
        yield (
            ("content", "placement"),
            f"this rule answers {placement}, not {content.placement}",
        )
    elif offer is not None and offer.channel != Channel.INBOX:
        yield ("offer", "channel"), "placement offers are shown: use inbox"
    elif content is None and offer is None:
        yield (), "placement rules set content or show an offer"
    for ref in facts.references(action):
        if ref.startswith("event."):
            yield (), f"{{{{ {ref} }}}}: placement rules have no event"


def _rule_test(
    test: RuleTest, *, ids: set[str], placements: dict[str, str], known: Known
) -> Iterator[Problem]:
    yield from _profile_facts(test.profile, known.purposes)
    for j, event in enumerate(test.events):
        if event.event not in known.events:
            yield ("events", j, "event"), _unknown_event(event.event, known.events)
    asked = test.decide.placement if test.decide else None
    if asked is not None and asked not in placements.values():
        message = f"no rule in this file answers {asked!r}"
        yield ("decide", "placement"), message + suggest.hint(asked, placements.values())
    for j, expected in enumerate(test.expect):
        checked = _expectation(expected, ids=ids, placements=placements, asked=asked)
        yield from _under(("expect", j), checked)


def _expectation(
    expected: Expectation, *, ids: set[str], placements: dict[str, str], asked: str | None
) -> Iterator[Problem]:
    """An expected rule is in the file, and answers what the test asks: events for an
    event test, the placement asked for by a decide test."""
    rule = expected.rule
    if rule not in ids:
        yield ("rule",), f"no rule {rule!r} in this file{suggest.hint(rule, ids)}"
    elif asked is None and rule in placements:
        yield ("rule",), f"{rule!r} answers placement requests: events never trigger it"
    elif asked is not None and placements.get(rule) != asked:
        yield ("rule",), f"{rule!r} does not answer {asked!r}"
    if asked is not None and expected.at is not None:
        yield ("at",), "a decide test has no time: drop `at`"


def _profile_facts(profile: TestProfile, purposes: Names | None) -> Iterator[Problem]:
    """A test's profile gives only facts a profile has, of the kind they are, and
    consent for purposes there are."""
    given = profile.model_dump(exclude={"traits", "segments", "consent"})
    for key in sorted(given):
        if key not in facts.PROFILE_FACTS:
            yield (
                ("profile", key),
                f"unknown profile fact {key!r}; use {', '.join(sorted(facts.PROFILE_FACTS))}"
                + suggest.hint(key, facts.PROFILE_FACTS),
            )
    for key, message in fact_types.given_problems(given):
        yield ("profile", key), message
    for purpose in profile.consent:
        problem = suggest.purpose_problem(purpose, purposes)
        if problem:
            yield ("profile", "consent", purpose), problem


# --- segment files -------------------------------------------------------------------------


def segment_file(sf: SegmentFile, *, purposes: Names | None = None) -> Iterator[Problem]:
    """A segment is a statement about the customer now: the profile and windows of
    their events that end now. There is no trigger event, so no `event.`, `context.` or
    `same`; and no other segments, whose membership may be being computed too."""
    known = Known(BUILTIN_EVENTS | set(sf.events), facts.STANDARD_TRAITS | set(sf.traits), purposes)
    yield from _version(sf.version)
    for i, condition in enumerate(sf.when):
        yield from _under(("when", i), _condition(condition, known, top=True))
        yield from _under(("when", i), _segment_facts(condition))
        yield from _under(("when", i), _segment_windows(condition))
    conflict = contradictions.contradiction(sf.when)
    if conflict:
        yield ("when",), f"no customer can ever be in this segment: {conflict}"
    for i, test in enumerate(sf.tests):
        yield from _under(("tests", i), _segment_test(test, known=known))


def _segment_facts(condition: BaseModel) -> Iterator[Problem]:
    for fact in _fact_paths(condition):
        if not fact.startswith("profile."):
            yield (), f"{fact}: segments test the profile and its events, no event"
        elif fact == "profile.segments":
            yield (), "a segment cannot depend on other segments' members"


def _segment_windows(condition: BaseModel) -> Iterator[Problem]:
    for window in _windows_in(condition):
        if window.same:
            yield (), "segments have no trigger event to be the same as: drop `same`"
        named = window.events if isinstance(window, AbsentSpec) else [window.event]
        for name in sorted(SEGMENT_EVENTS & set(named)):
            yield (), f"{name}: a segment cannot depend on other segments' members"


def _segment_test(test: SegmentTest, *, known: Known) -> Iterator[Problem]:
    yield from _profile_facts(test.profile, known.purposes)
    for j, past in enumerate(test.history):
        if past.event not in known.events:
            yield ("history", j, "event"), _unknown_event(past.event, known.events)


# --- conditions ----------------------------------------------------------------------------


def _conditions(rule: Rule, known: Known) -> Iterator[Problem]:
    for i, condition in enumerate(rule.trigger.where):
        yield from _under(("trigger", "where", i), _condition(condition, known, top=False))
        if _mentions(condition, AbsentCondition | CountCondition):
            yield ("trigger", "where", i), "count and absent belong under `when`, not `where`"
    for i, condition in enumerate(rule.when):
        yield from _under(("when", i), _condition(condition, known, top=True))
    conflict = contradictions.contradiction([*rule.trigger.where, *rule.when])
    if conflict:
        yield ("when",), f"this rule can never act: {conflict}"


def _condition(condition: BaseModel, known: Known, *, top: bool) -> Iterator[Problem]:
    if isinstance(condition, FactCondition):
        yield from _fact_condition(condition, known)
    elif isinstance(condition, AllCondition | AnyCondition):
        key = "all" if isinstance(condition, AllCondition) else "any"
        items = condition.all if isinstance(condition, AllCondition) else condition.any
        for i, item in enumerate(items):
            yield from _under((key, i), _condition(item, known, top=False))
    elif isinstance(condition, NotCondition):
        yield from _under(("not",), _condition(condition.not_, known, top=False))
    elif isinstance(condition, CountCondition):
        yield from _under(("count",), _count(condition.count, known.events))
    elif isinstance(condition, AbsentCondition):
        yield from _absent(condition.absent, known.events, top=top)


def _fact_condition(condition: FactCondition, known: Known) -> Iterator[Problem]:
    """A fact there is, compared with a value of its kind."""
    path, comparison = condition.path, condition.comparison
    problem = suggest.fact_problem(path, known.traits, known.purposes)
    if problem:
        yield (path,), problem
        return
    mismatch = fact_types.comparison_problem(path, comparison)
    if mismatch:
        yield (path, comparison.operator), mismatch


def _count(spec: CountSpec, events: Names) -> Iterator[Problem]:
    if spec.event not in events:
        yield ("event",), _unknown_event(spec.event, events)
    low, high = spec.at_least, spec.at_most
    if low is not None and high is not None and low > high:
        yield (), f"at_least {low} is more than at_most {high}"


def _absent(spec: AbsentSpec, events: Names, *, top: bool) -> Iterator[Problem]:
    if not top:
        yield (), "absent must be listed directly under `when` (not inside all/any/not)"
    for j, name in enumerate(spec.events):
        if name not in events:
            yield ("absent", "events", j), _unknown_event(name, events)


def _windows_in(condition: BaseModel) -> Iterator[CountSpec | AbsentSpec]:
    if isinstance(condition, CountCondition):
        yield condition.count
    elif isinstance(condition, AbsentCondition):
        yield condition.absent
    else:
        for item in _children(condition):
            yield from _windows_in(item)


def _fact_paths(condition: BaseModel) -> Iterator[str]:
    if isinstance(condition, FactCondition):
        yield condition.path
    else:
        for item in _children(condition):
            yield from _fact_paths(item)


def segments_tested(rule: Rule) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path in the rule, segment) for each `profile.segments: {contains: …}` (or
    not_contains) in its conditions."""
    tops: list[tuple[tuple[Any, ...], Condition]] = [
        (("trigger", "where", i), c) for i, c in enumerate(rule.trigger.where)
    ]
    tops += [(("when", i), c) for i, c in enumerate(rule.when)]
    for at, top in tops:
        for path, condition in _fact_conditions(top, at):
            c = condition.comparison
            tests = condition.path == "profile.segments" and c.operator in fact_types.HOLDS
            if tests and isinstance(c.operand, str):
                yield (*path, condition.path, c.operator), c.operand


def _fact_conditions(
    condition: BaseModel, at: tuple[Any, ...]
) -> Iterator[tuple[tuple[Any, ...], FactCondition]]:
    if isinstance(condition, FactCondition):
        yield at, condition
    elif isinstance(condition, AllCondition | AnyCondition):
        key = "all" if isinstance(condition, AllCondition) else "any"
        for i, item in enumerate(_children(condition)):
            yield from _fact_conditions(item, (*at, key, i))
    elif isinstance(condition, NotCondition):
        yield from _fact_conditions(condition.not_, (*at, "not"))


def _children(condition: BaseModel) -> list[Condition]:
    """The conditions an all, any or not combines; none for the others."""
    if isinstance(condition, AllCondition):
        return condition.all
    if isinstance(condition, AnyCondition):
        return condition.any
    if isinstance(condition, NotCondition):
        return [condition.not_]
    return []


def _mentions(condition: BaseModel, kinds: Any) -> bool:
    return isinstance(condition, kinds) or any(_mentions(c, kinds) for c in _children(condition))
