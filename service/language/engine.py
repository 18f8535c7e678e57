"""The one module that knows durable-rules.

A rule file compiles to one durable-rules ruleset. durable-rules is used as a
stateless matcher: each evaluation asserts one fact (the trigger event, the profile
and the history counts it needs, projected to short keys), reads which rules fired,
and retracts the fact. Nothing that must survive lives in its memory: its timers,
persistence and per-customer sessions are not used (they are in-process only, and a
ruleset holds at most 1,024 live sessions).

Semantics the compiler keeps, whatever the engine does with missing values:
a comparison on a missing fact is false (`gt`, `eq`, `in`, `contains`), its negation
is true (`ne`, `not_in`, `not_contains`, `exists: false`), and `not` is pushed down to
the comparisons so both stay true.
"""

from __future__ import annotations

import copy
import itertools
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import durable_rules_engine as native
import orjson
from durable import engine as durable
from pydantic import BaseModel

from service.language.facts import lookup
from service.language.loader import LoadedRuleset
from service.language.schema import (
    AbsentCondition,
    AbsentSpec,
    AllCondition,
    AnyCondition,
    Comparison,
    CountCondition,
    CountSpec,
    FactCondition,
    NotCondition,
    Rule,
    parse_duration,
)

TRIGGER_KEY = "t"


@dataclass(frozen=True)
class Window:
    """A count or absence condition: computed from stored events before matching."""

    key: str
    spec: CountSpec | AbsentSpec

    @property
    def is_absence(self) -> bool:
        return isinstance(self.spec, AbsentSpec)


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    windows: tuple[Window, ...]
    paths: tuple[str, ...]  # the facts it tests, for the firings log

    @property
    def cancelled_by(self) -> frozenset[str]:
        """Events that can end the rule's wait early (those of its absence windows)."""
        return frozenset(
            name for w in self.windows if isinstance(w.spec, AbsentSpec) for name in w.spec.events
        )

    @property
    def wait(self) -> timedelta:
        """How long after the trigger the rule acts: its delay, or the end of its
        longest absence window."""
        spans = [parse_duration(w.spec.within) for w in self.windows if w.is_absence]
        if self.rule.delay:
            spans.append(parse_duration(self.rule.delay))
        return max(spans, default=timedelta(0))


@dataclass(frozen=True)
class CompiledRuleset:
    loaded: LoadedRuleset
    engine_name: str
    rules: dict[str, CompiledRule]
    by_trigger: dict[str, tuple[CompiledRule, ...]]
    keys: dict[str, str]  # fact path → projected key
    handle: int | None  # the C engine's ruleset; None when every rule is disabled

    @property
    def name(self) -> str:
        return self.loaded.name


class _Compiler:
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.windows: list[Window] = []
        self.used: list[str] = []
        self._counter = itertools.count()

    def key(self, path: str) -> str:
        if path not in self.used:
            self.used.append(path)
        if path not in self.keys:
            self.keys[path] = f"f{len(self.keys)}"
        return self.keys[path]

    def rule(self, rule: Rule) -> tuple[dict[str, Any], CompiledRule]:
        self.windows, self.used = [], []
        terms = [{TRIGGER_KEY: rule.trigger.key}]
        terms += [self.condition(c) for c in (*rule.trigger.where, *rule.when)]
        compiled = CompiledRule(rule=rule, windows=tuple(self.windows), paths=tuple(self.used))
        return {"all": [{"m": _and(terms)}], "run": rule.id}, compiled

    def condition(self, c: BaseModel, *, negate: bool = False) -> dict[str, Any]:
        if isinstance(c, FactCondition):
            return _compare(self.key(c.path), c.comparison, negate=negate)
        if isinstance(c, AllCondition | AnyCondition):
            members = c.all if isinstance(c, AllCondition) else c.any
            items = [self.condition(x, negate=negate) for x in members]
            conjunction = isinstance(c, AllCondition) != negate
            return _and(items) if conjunction else _or(items)
        if isinstance(c, NotCondition):
            return self.condition(c.not_, negate=not negate)
        if isinstance(c, CountCondition):
            key = f"h{next(self._counter)}"
            self.windows.append(Window(key=key, spec=c.count))
            return _count(key, c.count, negate=negate)
        if isinstance(c, AbsentCondition):
            key = f"h{next(self._counter)}"
            self.windows.append(Window(key=key, spec=c.absent))
            return {key: not negate}
        raise TypeError(type(c).__name__)


def _and(terms: list[dict[str, Any]]) -> dict[str, Any]:
    return terms[0] if len(terms) == 1 else {"$and": terms}


def _or(terms: list[dict[str, Any]]) -> dict[str, Any]:
    return terms[0] if len(terms) == 1 else {"$or": terms}


def _missing(key: str) -> dict[str, Any]:
    return {"$nex": {key: 1}}


_OPPOSITE = {"gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}
_ENGINE_OP = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def _compare(key: str, c: Comparison, *, negate: bool) -> dict[str, Any]:
    op, value = c.operator, c.operand
    flip = {"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in"}
    flip |= {"contains": "not_contains", "not_contains": "contains"}
    if negate and op in flip:
        op = flip[op]
    elif negate and op == "exists":
        value = not value
    if op == "eq":
        return {key: value}
    if op == "ne":
        return _or([{"$neq": {key: value}}, _missing(key)])
    if op == "in":
        return _or([{key: v} for v in value])
    if op == "not_in":
        return _or([_missing(key), _and([{"$neq": {key: v}} for v in value])])
    if op == "contains":
        return {"$iany": {key: {"$i": value}}}
    if op == "not_contains":
        # An empty list has no item for $iall to check, so its length is projected too.
        return _or([_missing(key), {f"{key}_n": 0}, {"$iall": {key: {"$neq": {"$i": value}}}}])
    if op == "exists":
        return {"$ex": {key: 1}} if value else _missing(key)
    if negate:  # not (x > 5): x ≤ 5, or x missing
        return _or([{_ENGINE_OP[_OPPOSITE[op]]: {key: value}}, _missing(key)])
    return {_ENGINE_OP[op]: {key: value}}


def _count(key: str, spec: CountSpec, *, negate: bool) -> dict[str, Any]:
    bounds = []
    if spec.at_least is not None:
        bounds.append(("$lt", "$gte", spec.at_least))
    if spec.at_most is not None:
        bounds.append(("$gt", "$lte", spec.at_most))
    if negate:
        return _or([{low: {key: n}} for low, _, n in bounds])
    return _and([{high: {key: n}} for _, high, n in bounds])


class _Host(durable.Host):  # type: ignore[misc]
    """Holds the compiled rulesets. Its action dispatch is not used: `Engine.match`
    takes the queued actions from the C engine itself."""

    def _run(self) -> None:
        # durable-rules' Host starts two threads that dispatch queued actions and timers
        # of every ruleset. Evaluations here take their actions in the calling thread and
        # use no timers; left running, those threads touch a session while it is being
        # evaluated or deleted, which crashed the process ("free(): invalid size").
        pass

    def get_action(self, action_name: str) -> Any:
        def unused(_context: Any) -> None:
            raise AssertionError(f"{action_name}: actions are taken by Engine.match")

        return unused


class Engine:
    """Compiles rulesets (once per content hash) and matches facts against them.

    The C engine holds the GIL and its Host has no locks: one evaluation at a time.
    """

    def __init__(self) -> None:
        self._host = _Host()
        self._compiled: dict[str, CompiledRuleset] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()

    def compile(self, loaded: LoadedRuleset) -> CompiledRuleset:
        engine_name = f"{loaded.name}@{loaded.content_hash[:16]}"
        with self._lock:
            if engine_name in self._compiled:
                return self._compiled[engine_name]
            compiler = _Compiler()
            definition: dict[str, Any] = {}
            rules: dict[str, CompiledRule] = {}
            for rule in loaded.definition.rules:
                if not rule.enabled:
                    continue
                definition[rule.id], rules[rule.id] = compiler.rule(rule)
            handle = None
            if definition:
                # The loader removes `run` from the dict it is given: pass a copy.
                self._host.register_rulesets({engine_name: copy.deepcopy(definition)})
                handle = self._host.get_ruleset(engine_name)._handle
            by_trigger: dict[str, list[CompiledRule]] = {}
            for compiled_rule in rules.values():
                by_trigger.setdefault(compiled_rule.rule.trigger.key, []).append(compiled_rule)
            result = CompiledRuleset(
                loaded=loaded,
                engine_name=engine_name,
                rules=rules,
                by_trigger={k: tuple(v) for k, v in by_trigger.items()},
                keys=dict(compiler.keys),
                handle=handle,
            )
            self._compiled[engine_name] = result
            return result

    def match(
        self,
        ruleset: CompiledRuleset,
        *,
        trigger: str,
        facts: dict[str, Any],
        history: dict[str, Any],
    ) -> list[str]:
        """Ids of the rules of `ruleset` whose conditions hold for these facts."""
        if trigger not in ruleset.by_trigger or ruleset.handle is None:
            return []
        message = project(ruleset.keys, facts)
        message.update(history)
        message[TRIGGER_KEY] = trigger
        with self._lock:
            # One session, emptied after each evaluation by retracting the fact.
            # (`delete_state` on a session whose fact matched nothing crashes the C
            # engine; a fact that matched nothing is not stored, so is not retracted.)
            message["sid"], message["id"] = "0", next(self._ids)
            # The C engine is called directly, as durable-rules' Host does, minus what
            # a stateless match does not need: its stdlib JSON encoding of the fact
            # (twice) and the Python closure, state copy and write-back around each
            # action. That was half the time of an evaluation.
            payload = orjson.dumps(message).decode()
            code, state = native.assert_fact(ruleset.handle, payload)
            if code == _NOT_HANDLED:
                return []
            try:
                fired = _drain(ruleset.handle, state)
            finally:  # the session is emptied whatever happens, or the next match sees it
                _code, state = native.retract_fact(ruleset.handle, payload)
                _drain(ruleset.handle, state)
        # A rule's action runs once per branch of an `any` that holds: once is enough.
        return list(dict.fromkeys(fired))


_NOT_HANDLED = 1  # the C engine's result code for a fact no rule matched


def _drain(handle: int, state: int) -> list[str]:
    """Take the actions the last assertion queued on the session, in order, and mark
    each complete: the names of the rules that fired."""
    fired: list[str] = []
    result = native.start_action_for_state(handle, state)
    action = result[1] if result else None
    while action:
        fired.extend(orjson.loads(action))  # {rule id: the matched fact}
        action = native.complete_and_start_action(handle, state)
    return fired


def project(keys: dict[str, str], facts: dict[str, Any]) -> dict[str, Any]:
    """The facts a ruleset tests, under its short keys. Missing and null values are
    left out (so they read as missing); lists keep their plain items and their length;
    other nested values cannot be compared and are left out."""
    message: dict[str, Any] = {}
    for path, key in keys.items():
        value = lookup(facts, path)
        if value is None or isinstance(value, dict):
            continue
        if isinstance(value, list | tuple):
            items = [v for v in value if isinstance(v, str | int | float | bool)]
            message[key], message[f"{key}_n"] = items, len(items)
        else:
            message[key] = value
    return message
