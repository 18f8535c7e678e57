"""Load rule files and segment files: each read (`parse`) and checked (`validate`),
then checked across the files, into `LoadedRuleset`s and `LoadedSegment`s.

A set of files is loaded all together or not at all: `load_all` returns either every
ruleset and segment or every error found, so a reload never activates half a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from service.language import parse, templates, validate, yamlcheck
from service.language.files import RuleFile, SegmentFile
from service.language.parse import RuleError, RulesInvalid, read_file

SEGMENTS_DIR = "segments"  # under the rules directory
SEGMENT_PREFIX = "segment:"  # the name a segment's stored versions are kept under


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
    errors.extend(_experiments_across(rulesets, segments))
    if errors:
        raise RulesInvalid(errors)
    return rulesets, segments


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
    node, definition = parse.parse_model(file, source, RuleFile)
    errors = [
        RuleError(file, parse.line(node, path), message)
        for path, message in validate.rule_file(definition)
    ]
    if errors:
        raise RulesInvalid(errors)
    return LoadedRuleset(
        file=file, source=source, content_hash=content_hash(source), definition=definition
    )


def load_segment_source(file: str, source: str) -> LoadedSegment:
    node, definition = parse.parse_model(file, source, SegmentFile)
    errors = [
        RuleError(file, parse.line(node, path), message)
        for path, message in validate.segment_file(definition)
    ]
    if errors:
        raise RulesInvalid(errors)
    return LoadedSegment(
        file=file, source=source, content_hash=content_hash(source), definition=definition
    )


# --- checks across the files ----------------------------------------------------------


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


def _experiments_across(
    rulesets: list[LoadedRuleset], segments: list[LoadedSegment]
) -> Iterator[RuleError]:
    """Experiment keys are unique; a placement target has a default somewhere; a
    targeted segment is computed from a segment file or set by a rule."""
    placements = {name for r in rulesets for name in r.definition.placements}
    known = {s.name for s in segments} | {
        name
        for r in rulesets
        for rule in r.definition.rules
        for action in rule.actions
        for spec in [getattr(action, "segment", None)]
        if spec is not None
        for name in (spec.add, spec.remove)
        if name
    }
    keys: dict[str, str] = {}
    for item in rulesets:
        for i, spec in enumerate(item.definition.experiments):
            line = _line(item, ("experiments", i, "key"))
            if spec.key in keys and keys[spec.key] != item.file:
                yield RuleError(
                    item.file, line, f"experiment {spec.key!r} is also declared in {keys[spec.key]}"
                )
            keys.setdefault(spec.key, item.file)
            placement = spec.target.placement
            if placement is not None and placement not in placements:
                yield RuleError(
                    item.file, line, f"experiment {spec.key}: no placement {placement!r} is defined"
                )
            if spec.segment is not None and spec.segment not in known:
                yield RuleError(
                    item.file,
                    line,
                    f"experiment {spec.key}: segment {spec.segment!r} is neither defined in "
                    f"{SEGMENTS_DIR}/ nor set by a rule",
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
        for i, spec in enumerate(item.definition.experiments):
            changes = [(("variants", j), v) for j, v in enumerate(spec.variants)] + [
                (("factors", j, "levels", k), level)
                for j, factor in enumerate(spec.factors)
                for k, level in enumerate(factor.levels)
            ]
            for path, variant in changes:
                problem = variant.template and _template_problem(directory, variant.template)
                if problem:
                    where = ("experiments", i, *path, "template")
                    yield RuleError(item.file, _line(item, where), f"{spec.key}: {problem}")


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
    index = next(i for i, r in enumerate(item.definition.rules) if r.id == rule_id)
    return _line(item, ("rules", index, "id"))


def _line(item: LoadedRuleset, path: tuple[str | int, ...]) -> int | None:
    node = yaml.compose(item.source, Loader=yaml.SafeLoader)
    assert node is not None  # it was loaded from this text
    return parse.line(node, path)
