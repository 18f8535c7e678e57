"""Read rule files: YAML → validated `RuleFile`, or errors that name the file and line.

A set of files is loaded all together or not at all: `load_all` returns either every
ruleset and segment or every error found, so a reload never activates half a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.reader import ReaderError

from service.events.canonical import ECOMMERCE_EVENTS
from service.language import facts, templates, yamlcheck
from service.language.schema import (
    OPERATORS,
    AbsentCondition,
    AbsentSpec,
    AllCondition,
    AnyCondition,
    Condition,
    CountCondition,
    CountSpec,
    FactCondition,
    NotCondition,
    Rule,
    RuleFile,
    SegmentFile,
    parse_duration,
)

# Entering and leaving a segment are events too (properties: segment, version, reason).
SEGMENT_EVENTS = frozenset({"Segment Entered", "Segment Left"})
BUILTIN_EVENTS = frozenset(
    ECOMMERCE_EVENTS | SEGMENT_EVENTS | {"Page Viewed", "Screen Viewed", "Identify"}
)
M = TypeVar("M", bound=BaseModel)
SEGMENTS_DIR = "segments"  # under the rules directory
SEGMENT_PREFIX = "segment:"  # the name a segment's stored versions are kept under
MAX_VERSION = 2**31 - 1  # a `version:` is kept in an integer column
MAX_FILE_NAME = 255  # a file's name, as kept with its versions


@dataclass(frozen=True)
class RuleError:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}


class RulesInvalid(Exception):
    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedRuleset:
    """A validated rule file and the exact text it came from."""

    file: str
    source: str
    content_hash: str
    definition: RuleFile

    @property
    def name(self) -> str:
        return self.definition.ruleset


@dataclass(frozen=True)
class LoadedSegment:
    """A validated segment file and the exact text it came from."""

    file: str  # relative to the rules directory: `segments/<name>.yaml`
    source: str
    content_hash: str
    definition: SegmentFile

    @property
    def name(self) -> str:
        return self.definition.segment

    @property
    def version_name(self) -> str:
        return SEGMENT_PREFIX + self.name


def content_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def load_directory(directory: Path) -> list[LoadedRuleset]:
    """Every `*.yaml`/`*.yml` file in `directory`, or RulesInvalid with all the errors."""
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    sources, errors = [], []
    for path in files:
        try:
            sources.append((path.name, read_file(path, path.name)))
        except RulesInvalid as exc:
            errors.extend(exc.errors)
    try:
        loaded = load_sources(sources)
    except RulesInvalid as exc:
        raise RulesInvalid(errors + exc.errors) from None
    errors.extend(_email_templates(loaded, directory))
    if errors:
        raise RulesInvalid(errors)
    return loaded


def load_all(directory: Path) -> tuple[list[LoadedRuleset], list[LoadedSegment]]:
    """The rule files and the segment files (`segments/`), or RulesInvalid with every
    error in either."""
    errors: list[RuleError] = []
    rulesets: list[LoadedRuleset] = []
    try:
        rulesets = load_directory(directory)
    except RulesInvalid as exc:
        errors.extend(exc.errors)
    segments: list[LoadedSegment] = []
    for path in segment_files(directory):
        name = f"{SEGMENTS_DIR}/{path.name}"
        try:
            segments.append(load_segment_source(name, read_file(path, name)))
        except RulesInvalid as exc:
            errors.extend(exc.errors)
    errors.extend(_segments_across(rulesets, segments))
    if errors:
        raise RulesInvalid(errors)
    return rulesets, segments


def read_file(path: Path, name: str) -> str:
    """The file's text, or RulesInvalid naming the file (and the line of a byte that is
    not UTF-8)."""
    if len(name) > MAX_FILE_NAME:
        raise RulesInvalid([RuleError(name[:60] + "…", None, "the file name is too long")])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RulesInvalid([RuleError(name, None, f"cannot be read: {exc.strerror}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: byte 0x{raw[exc.start]:02x} (a binary file?)"
        raise RulesInvalid([RuleError(name, line, message)]) from None


def segment_files(directory: Path) -> list[Path]:
    folder = directory / SEGMENTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_sources(sources: Iterable[tuple[str, str]]) -> list[LoadedRuleset]:
    loaded: list[LoadedRuleset] = []
    errors: list[RuleError] = []
    for name, source in sources:
        try:
            loaded.append(load_source(name, source))
        except RulesInvalid as exc:
            errors.extend(exc.errors)
    errors.extend(_across_files(loaded))
    if errors:
        raise RulesInvalid(errors)
    return loaded


def load_source(file: str, source: str) -> LoadedRuleset:
    node, definition = _parse(file, source, RuleFile)
    errors = [
        RuleError(file, _line(node, path), message) for path, message in _semantic(definition)
    ]
    if errors:
        raise RulesInvalid(errors)
    return LoadedRuleset(
        file=file, source=source, content_hash=content_hash(source), definition=definition
    )


def load_segment_source(file: str, source: str) -> LoadedSegment:
    node, definition = _parse(file, source, SegmentFile)
    errors = [
        RuleError(file, _line(node, path), message)
        for path, message in _segment_semantic(definition)
    ]
    if errors:
        raise RulesInvalid(errors)
    return LoadedSegment(
        file=file, source=source, content_hash=content_hash(source), definition=definition
    )


def _parse(file: str, source: str, model: type[M]) -> tuple[yaml.Node, M]:
    try:
        # Plain data only, in bounds: checked before anything is built from the text.
        problems = yamlcheck.problems(source)
        if problems:
            raise RulesInvalid([RuleError(file, line, message) for line, message in problems])
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise RulesInvalid([_yaml_error(file, source, exc)]) from None
    if node is None:
        raise RulesInvalid([RuleError(file, None, "the file is empty")])
    if not isinstance(node, yaml.MappingNode):
        what = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        first = next(iter(model.model_fields))
        message = f"the file must be a mapping of fields ({first}: …), not {what}"
        raise RulesInvalid([RuleError(file, node.start_mark.line + 1, message)])
    errors = [RuleError(file, line, message) for line, message in _duplicate_keys(node)]
    if errors:
        raise RulesInvalid(errors)
    try:
        data = yaml.SafeLoader(source).construct_document(node)
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # beyond what was checked above
        raise RulesInvalid([_yaml_error(file, source, exc)]) from None
    try:
        return node, model.model_validate(data)
    except ValidationError as exc:
        raise RulesInvalid(_validation_errors(file, node, exc)) from None


def _yaml_error(file: str, source: str, exc: Exception) -> RuleError:
    if isinstance(exc, ReaderError) and isinstance(exc.character, int):
        line = source.count("\n", 0, exc.position) + 1  # a character YAML does not allow
        return RuleError(file, line, f"YAML: the character #x{exc.character:04x} is not allowed")
    mark = getattr(exc, "problem_mark", None)
    message = f"YAML: {getattr(exc, 'problem', None) or exc}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        message += f" ({context.removeprefix('while ')} that starts on line {start.line + 1})"
    return RuleError(file, mark.line + 1 if mark else None, message)


# --- locating errors in the YAML ----------------------------------------------------------


def _duplicate_keys(node: yaml.Node) -> Iterator[tuple[int, str]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.value in seen:
                yield key.start_mark.line + 1, f"{key.value!r} is given twice"
            seen.add(key.value)
            yield from _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)


def _line(root: yaml.Node, path: tuple[Any, ...]) -> int:
    return _locate(root, path)[0]


def _locate(root: yaml.Node, path: tuple[Any, ...]) -> tuple[int, str]:
    """The line of the deepest node along `path`, and that path as written in the
    file. Parts that are not keys or indexes of the YAML (the validator's own labels
    for alternatives) are skipped."""
    aliases = {"not_": "not", "in_": "in"}
    parts = [aliases.get(p, p) if isinstance(p, str) else p for p in path]
    # A union's tag comes before the field of the same name (`offer`, `offer`): skip it.
    parts = [p for i, p in enumerate(parts) if i + 1 == len(parts) or parts[i + 1] != p]
    node, walked = root, []
    for key in parts:
        if isinstance(node, yaml.MappingNode):
            for k, value in node.value:
                if k.value == key:
                    node = value
                    walked.append(str(key))
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            walked.append(str(key))
    return node.start_mark.line + 1, ".".join(walked)


def _validation_errors(file: str, root: yaml.Node, exc: ValidationError) -> list[RuleError]:
    found: dict[tuple[int, str], RuleError] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        line, where = _locate(root, loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            parent = loc[-2] if len(loc) > 1 else ""
            if isinstance(parent, str) and parent.startswith(("event.", "context.", "profile.")):
                message = f"unknown operator {loc[-1]!r}; use one of: {', '.join(OPERATORS)}"
            else:
                message = f"unknown field {loc[-1]!r}"
        elif error["type"] == "missing" and loc:
            message = f"{loc[-1]!r} is required here"  # the key is not in the file to point at
        elif error["type"] == "string_pattern_mismatch" and loc and loc[-1] == "[key]":
            message = f"{error['input']!r} is not a fact (use event.…, context.… or profile.…)"
        text = f"{where}: {message}" if where else message
        found.setdefault((line, text), RuleError(file, line, text))
    return list(found.values())


# --- checks the schema cannot express -------------------------------------------------------


def _semantic(rf: RuleFile) -> Iterator[tuple[tuple[Any, ...], str]]:
    events = BUILTIN_EVENTS | set(rf.events)
    traits = facts.STANDARD_TRAITS | set(rf.traits)
    ids = set()
    placement_rules = {r.id: r.trigger.placement for r in rf.rules if r.trigger.placement}
    if rf.version > MAX_VERSION:
        yield ("version",), f"version {rf.version} is more than {MAX_VERSION}"
    for i, rule in enumerate(rf.rules):
        at = ("rules", i)
        if rule.version > MAX_VERSION:
            yield (*at, "version"), f"version {rule.version} is more than {MAX_VERSION}"
        if rule.id in ids:
            yield (*at, "id"), f"rule id {rule.id!r} is used twice in this file"
        ids.add(rule.id)
        if rule.trigger.placement is not None:
            for path, message in _placement_rule(rule):
                yield (*at, *path), message
        elif rule.trigger.event not in events:
            yield (*at, "trigger", "event"), _unknown_event(str(rule.trigger.event))
        for path, message in _conditions(rule, events, traits):
            yield (*at, *path), message
        for j, action in enumerate(rule.actions):
            for ref in facts.references(action):
                problem = facts.check_path(ref, traits)
                if problem:
                    yield (*at, "actions", j), f"{{{{ {ref} }}}}: {problem}"
        for name in (rule.delay,) + ((rule.limits.cooldown,) if rule.limits else ()):
            if name is not None:
                parse_duration(name)
    for i, test in enumerate(rf.tests):
        for key in sorted(set(test.profile.model_dump()) - {"traits", "segments", "consent"}):
            if key not in facts.PROFILE_FACTS:
                yield (
                    ("tests", i, "profile", key),
                    (f"unknown profile fact {key!r}; use {', '.join(sorted(facts.PROFILE_FACTS))}"),
                )
        for j, event in enumerate(test.events):
            if event.event not in events:
                yield ("tests", i, "events", j, "event"), _unknown_event(event.event)
        asked = test.decide.placement if test.decide else None
        if asked is not None and asked not in placement_rules.values():
            yield ("tests", i, "decide", "placement"), f"no rule in this file answers {asked!r}"
        for j, expected in enumerate(test.expect):
            where = ("tests", i, "expect", j, "rule")
            if expected.rule not in ids:
                yield where, f"no rule {expected.rule!r} in this file"
            elif asked is None and expected.rule in placement_rules:
                yield (
                    where,
                    f"{expected.rule!r} answers placement requests: events never trigger it",
                )
            elif asked is not None and placement_rules.get(expected.rule) != asked:
                yield where, f"{expected.rule!r} does not answer {asked!r}"
            if asked is not None and expected.at is not None:
                yield ("tests", i, "expect", j, "at"), "a decide test has no time: drop `at`"


def _segment_semantic(sf: SegmentFile) -> Iterator[tuple[tuple[Any, ...], str]]:
    """A segment is a statement about the customer now: the profile and windows of
    their events that end now. There is no trigger event, so no `event.`, `context.` or
    `same`; and no other segments, whose membership may be being computed too."""
    events = BUILTIN_EVENTS | set(sf.events)
    traits = facts.STANDARD_TRAITS | set(sf.traits)
    if sf.version > MAX_VERSION:
        yield ("version",), f"version {sf.version} is more than {MAX_VERSION}"
    for i, condition in enumerate(sf.when):
        for path, message in _condition(condition, events, traits, top=True):
            yield ("when", i, *path), message
        for fact in _fact_paths(condition):
            if not fact.startswith("profile."):
                yield ("when", i), f"{fact}: segments test the profile and its events, no event"
            elif fact == "profile.segments":
                yield ("when", i), "a segment cannot depend on other segments' members"
        for window in _windows_in(condition):
            if window.same:
                yield ("when", i), "segments have no trigger event to be the same as: drop `same`"
            named = window.events if isinstance(window, AbsentSpec) else [window.event]
            for name in sorted(SEGMENT_EVENTS & set(named)):
                yield ("when", i), f"{name}: a segment cannot depend on other segments' members"
    conflict = _contradiction(sf.when)
    if conflict:
        yield ("when",), f"no customer can ever be in this segment: {conflict}"
    for i, test in enumerate(sf.tests):
        for key in sorted(set(test.profile.model_dump()) - {"traits", "segments", "consent"}):
            if key not in facts.PROFILE_FACTS:
                yield (
                    ("tests", i, "profile", key),
                    f"unknown profile fact {key!r}; use {', '.join(sorted(facts.PROFILE_FACTS))}",
                )
        for j, past in enumerate(test.history):
            if past.event not in events:
                yield ("tests", i, "history", j, "event"), _unknown_event(past.event)


def _windows_in(condition: BaseModel) -> Iterator[CountSpec | AbsentSpec]:
    if isinstance(condition, CountCondition):
        yield condition.count
    elif isinstance(condition, AbsentCondition):
        yield condition.absent
    elif isinstance(condition, AllCondition | AnyCondition):
        for item in condition.all if isinstance(condition, AllCondition) else condition.any:
            yield from _windows_in(item)
    elif isinstance(condition, NotCondition):
        yield from _windows_in(condition.not_)


def _placement_rule(rule: Rule) -> Iterator[tuple[tuple[Any, ...], str]]:
    """A placement rule is decided while the storefront waits, from the profile and the
    request alone: no event, no history, no waiting, nothing sent."""
    conditions: list[tuple[tuple[Any, ...], BaseModel]] = [
        (("trigger", "where", i), c) for i, c in enumerate(rule.trigger.where)
    ]
    conditions += [(("when", i), c) for i, c in enumerate(rule.when)]
    for path, condition in conditions:
        if _mentions(condition, AbsentCondition | CountCondition):
            yield path, "placement rules cannot use count or absent (no history is read)"
        for fact in _fact_paths(condition):
            if fact.startswith("event."):
                yield path, f"{fact}: placement rules see context and profile, not event"
    if rule.delay is not None:
        yield ("delay",), "placement rules answer at once: no delay"
    if rule.limits is not None:
        yield ("limits",), "placement rules are chosen by priority: no limits"
    for j, action in enumerate(rule.actions):
        content = getattr(action, "content", None)
        offer = getattr(action, "offer", None)
        if content is not None and content.placement != rule.trigger.placement:
            yield (
                ("actions", j, "content", "placement"),
                f"this rule answers {rule.trigger.placement}, not {content.placement}",
            )
        elif offer is not None and offer.channel != "inbox":
            yield ("actions", j, "offer", "channel"), "placement offers are shown: use inbox"
        elif content is None and offer is None:
            yield ("actions", j), "placement rules set content or show an offer"
        for ref in facts.references(action):
            if ref.startswith("event."):
                yield ("actions", j), f"{{{{ {ref} }}}}: placement rules have no event"


def _fact_paths(condition: BaseModel) -> Iterator[str]:
    if isinstance(condition, FactCondition):
        yield condition.path
    elif isinstance(condition, AllCondition | AnyCondition):
        for item in condition.all if isinstance(condition, AllCondition) else condition.any:
            yield from _fact_paths(item)
    elif isinstance(condition, NotCondition):
        yield from _fact_paths(condition.not_)


def _unknown_event(name: str) -> str:
    return (
        f"unknown event {name!r}; built-in events are {', '.join(sorted(BUILTIN_EVENTS))}. "
        "If the shop sends it, list it under `events:` at the top of the file"
    )


def _conditions(
    rule: Rule, events: frozenset[str] | set[str], traits: frozenset[str] | set[str]
) -> Iterator[tuple[tuple[Any, ...], str]]:
    for i, condition in enumerate(rule.trigger.where):
        for path, message in _condition(condition, events, traits, top=False):
            yield ("trigger", "where", i, *path), message
        if _mentions(condition, AbsentCondition | CountCondition):
            yield ("trigger", "where", i), "count and absent belong under `when`, not `where`"
    for i, condition in enumerate(rule.when):
        for path, message in _condition(condition, events, traits, top=True):
            yield ("when", i, *path), message
    conflict = _contradiction([*rule.trigger.where, *rule.when])
    if conflict:
        yield ("when",), f"this rule can never act: {conflict}"


def _condition(
    condition: BaseModel,
    events: frozenset[str] | set[str],
    traits: frozenset[str] | set[str],
    *,
    top: bool,
) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(condition, FactCondition):
        problem = facts.check_path(condition.path, traits)
        if problem:
            yield (condition.path,), problem
    elif isinstance(condition, AllCondition | AnyCondition):
        key = "all" if isinstance(condition, AllCondition) else "any"
        items = condition.all if isinstance(condition, AllCondition) else condition.any
        for i, item in enumerate(items):
            for path, message in _condition(item, events, traits, top=False):
                yield (key, i, *path), message
    elif isinstance(condition, NotCondition):
        for path, message in _condition(condition.not_, events, traits, top=False):
            yield ("not", *path), message
    elif isinstance(condition, CountCondition):
        if condition.count.event not in events:
            yield ("count", "event"), _unknown_event(condition.count.event)
        low, high = condition.count.at_least, condition.count.at_most
        if low is not None and high is not None and low > high:
            yield ("count",), f"at_least {low} is more than at_most {high}"
    elif isinstance(condition, AbsentCondition):
        if not top:
            yield (), "absent must be listed directly under `when` (not inside all/any/not)"
        for j, name in enumerate(condition.absent.events):
            if name not in events:
                yield ("absent", "events", j), _unknown_event(name)


def _mentions(condition: BaseModel, kinds: Any) -> bool:
    if isinstance(condition, kinds):
        return True
    if isinstance(condition, AllCondition):
        return any(_mentions(c, kinds) for c in condition.all)
    if isinstance(condition, AnyCondition):
        return any(_mentions(c, kinds) for c in condition.any)
    if isinstance(condition, NotCondition):
        return _mentions(condition.not_, kinds)
    return False


def _contradiction(conditions: list[Condition]) -> str | None:
    """Comparisons on one fact that no value satisfies together (all must hold)."""
    by_path: dict[str, list[tuple[str, Any]]] = {}
    for condition in _conjuncts(conditions):
        c = condition.comparison
        by_path.setdefault(condition.path, []).append((c.operator, c.operand))
    for path, tests in by_path.items():
        if len(tests) < 2:
            continue
        equal = {repr(v) for op, v in tests if op == "eq"}
        if len(equal) > 1:
            return f"{path} cannot equal both {' and '.join(sorted(equal))}"
        if ("exists", False) in tests and any(
            op not in ("exists", "ne", "not_in", "not_contains") for op, _ in tests
        ):
            return f"{path} must be missing and also compared"
        numbers = [
            (op, v) for op, v in tests if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        low = max((v for op, v in numbers if op in ("gt", "gte", "eq")), default=None)
        high = min((v for op, v in numbers if op in ("lt", "lte", "eq")), default=None)
        if low is not None and high is not None:
            strict = any(op in ("gt", "lt") and v in (low, high) for op, v in numbers)
            if low > high or (low == high and strict):
                return f"no value of {path} is both ≥ {low} and ≤ {high}"
        for op, v in tests:
            if op == "eq" and any(o == "in" and v not in values for o, values in tests):
                return f"{path} = {v!r} is not among the `in` values"
    return None


def _conjuncts(conditions: Iterable[BaseModel]) -> Iterator[FactCondition]:
    for condition in conditions:
        if isinstance(condition, FactCondition):
            yield condition
        elif isinstance(condition, AllCondition):
            yield from _conjuncts(condition.all)


def _across_files(loaded: list[LoadedRuleset]) -> Iterator[RuleError]:
    rulesets: dict[str, str] = {}
    rules: dict[str, str] = {}
    defaults: dict[str, str] = {}
    for item in loaded:
        for name in item.definition.placements:
            if name in defaults:
                yield RuleError(
                    item.file, 1, f"placement {name!r} is also defined in {defaults[name]}"
                )
            defaults.setdefault(name, item.file)
    for item in loaded:
        for rule in item.definition.rules:
            placement = rule.trigger.placement
            if placement is not None and placement not in defaults:
                yield RuleError(
                    item.file,
                    _rule_line(item, rule.id),
                    f"placement {placement!r} has no default: define it under `placements:`",
                )
        if item.name in rulesets:
            yield RuleError(
                item.file, 1, f"ruleset {item.name!r} is also defined in {rulesets[item.name]}"
            )
        rulesets[item.name] = item.file
        for rule in item.definition.rules:
            if rule.id in rules:
                yield RuleError(
                    item.file,
                    _rule_line(item, rule.id),
                    f"rule id {rule.id!r} is also used in {rules[rule.id]}",
                )
            rules.setdefault(rule.id, item.file)


def _segments_across(
    rulesets: list[LoadedRuleset], segments: list[LoadedSegment]
) -> Iterator[RuleError]:
    """Segment ids are unique, and a segment with a definition is computed: rules may
    add customers to and remove them from other segments only."""
    defined: dict[str, str] = {}
    for item in segments:
        if item.name in defined:
            yield RuleError(
                item.file, 1, f"segment {item.name!r} is also defined in {defined[item.name]}"
            )
        defined.setdefault(item.name, item.file)
    for ruleset in rulesets:
        for rule in ruleset.definition.rules:
            for action in rule.actions:
                spec = getattr(action, "segment", None)
                name = spec and (spec.add or spec.remove)
                if name in defined:
                    yield RuleError(
                        ruleset.file,
                        _rule_line(ruleset, rule.id),
                        f"rule {rule.id}: segment {name!r} is computed from {defined[name]}; "
                        "rules can add to and remove from other segments only",
                    )


def _email_templates(loaded: list[LoadedRuleset], directory: Path) -> Iterator[RuleError]:
    """Email offers name a template that exists and parses. (Checked on the files being
    loaded, not on stored versions, which must load whatever the templates are now.)"""
    for item in loaded:
        for rule in item.definition.rules:
            for action in rule.actions:
                offer = getattr(action, "offer", None)
                if offer is None or offer.template is None:
                    continue
                problem = _template_problem(directory, offer.template)
                if problem:
                    yield RuleError(
                        item.file, _rule_line(item, rule.id), f"rule {rule.id}: {problem}"
                    )


def _template_problem(directory: Path, name: str) -> str | None:
    """What is wrong with the email template `name`, checked as plain data like the rule
    files before it is read."""
    where = f"{templates.DIRECTORY}/{name}.yaml"
    path = directory / where
    if path.is_file():
        try:
            problems = yamlcheck.problems(read_file(path, where))
        except RulesInvalid as exc:
            return str(exc)
        except yaml.YAMLError:
            problems = []  # templates.load says what is wrong, with the YAML's own words
        if problems:
            line, message = problems[0]
            return f"{where}:{line}: {message}"
    try:
        templates.load(directory, name)
    except templates.TemplateProblem as exc:
        return str(exc)
    return None


def _rule_line(item: LoadedRuleset, rule_id: str) -> int | None:
    node = yaml.compose(item.source, Loader=yaml.SafeLoader)
    assert node is not None  # it was loaded from this text
    index = next(i for i, r in enumerate(item.definition.rules) if r.id == rule_id)
    return _line(node, ("rules", index, "id"))


def parse_model(file: str, source: str, model: type[M]) -> tuple[yaml.Node, M]:
    """Any YAML file read as rule files are (plain data only, duplicate keys refused)
    and validated against `model`; RulesInvalid naming the file and line of each error."""
    return _parse(file, source, model)
