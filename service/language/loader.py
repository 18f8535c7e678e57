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

from service.language import emails, parse, validate
from service.language.files import RuleFile, SegmentFile
from service.language.parse import RuleError, RulesInvalid, read_file
from service.language.suggest import hint
from service.language.validate import Names
from service.settings import get_settings

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


def declared_purposes() -> frozenset[str]:
    """The consent purposes files may test: the keys of the setting CONSENT_DEFAULTS
    (every purpose has a default there; a purpose missing from it is a misspelling)."""
    return frozenset(get_settings().consent_defaults)


def load_directory(directory: Path, *, purposes: Names | None = None) -> list[LoadedRuleset]:
    """Every `*.yaml`/`*.yml` file in `directory`, or RulesInvalid with all the errors.
    Files on disk are about to go live: their consent purposes are checked (`purposes`,
    by default the declared ones) and their email offers against the templates."""
    loaded, errors, _complete = _rule_files(directory, purposes=purposes)
    if errors:
        raise RulesInvalid(errors)
    return loaded


def load_all(
    directory: Path, *, purposes: Names | None = None
) -> tuple[list[LoadedRuleset], list[LoadedSegment]]:
    """The rule files and the segment files (`segments/`), or RulesInvalid with every
    error in either."""
    purposes = declared_purposes() if purposes is None else purposes
    rulesets, errors, complete = _rule_files(directory, purposes=purposes)
    segments: list[LoadedSegment] = []
    paths = segment_files(directory)
    for path in paths:
        name = f"{SEGMENTS_DIR}/{path.name}"
        try:
            segments.append(load_segment_source(name, read_file(path, name), purposes=purposes))
        except RulesInvalid as exc:
            errors.extend(exc.errors)
    # What one file uses another may define: checked when every file loaded.
    across = rulesets if complete and len(segments) == len(paths) else []
    errors.extend(_segments_across(across, segments))
    errors.extend(_experiments_across(across, segments))
    if errors:
        raise RulesInvalid(errors)
    return rulesets, segments


def _rule_files(
    directory: Path, *, purposes: Names | None
) -> tuple[list[LoadedRuleset], list[RuleError], bool]:
    """The rule files that load, every error (each file's, across them, and of their
    email offers with the templates), and whether every file loaded."""
    purposes = declared_purposes() if purposes is None else purposes
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    sources, errors = [], []
    for path in files:
        try:
            sources.append((path.name, read_file(path, path.name)))
        except RulesInvalid as exc:
            errors.extend(exc.errors)
    loaded, found = _load_each(sources, purposes=purposes)
    complete = len(loaded) == len(files)
    errors.extend(found)
    for item in loaded:
        errors.extend(_errors(item, emails.check(item.definition, directory)))
    return loaded, errors, complete


def segment_files(directory: Path) -> list[Path]:
    folder = directory / SEGMENTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_sources(
    sources: Iterable[tuple[str, str]], *, purposes: Names | None = None
) -> list[LoadedRuleset]:
    loaded, errors = _load_each(sources, purposes=purposes)
    if errors:
        raise RulesInvalid(errors)
    return loaded


def _load_each(
    sources: Iterable[tuple[str, str]], *, purposes: Names | None
) -> tuple[list[LoadedRuleset], list[RuleError]]:
    """The files that load, and every error: each file's, and those across them."""
    loaded: list[LoadedRuleset] = []
    errors: list[RuleError] = []
    for name, source in sources:
        try:
            loaded.append(load_source(name, source, purposes=purposes))
        except RulesInvalid as exc:
            errors.extend(exc.errors)
    errors.extend(_across_files(loaded))
    return loaded, errors


def load_source(file: str, source: str, *, purposes: Names | None = None) -> LoadedRuleset:
    """One rule file; `purposes`: the consent purposes it may test (None: any, as for a
    stored version loaded again, which was checked when it was deployed)."""
    node, definition = parse.parse_model(file, source, RuleFile)
    errors = [
        RuleError(file, parse.line(node, path), message)
        for path, message in validate.rule_file(definition, purposes=purposes)
    ]
    if errors:
        raise RulesInvalid(errors)
    return LoadedRuleset(
        file=file, source=source, content_hash=content_hash(source), definition=definition
    )


def load_segment_source(file: str, source: str, *, purposes: Names | None = None) -> LoadedSegment:
    node, definition = parse.parse_model(file, source, SegmentFile)
    errors = [
        RuleError(file, parse.line(node, path), message)
        for path, message in validate.segment_file(definition, purposes=purposes)
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
                    f"placement {placement!r} has no default: define it under `placements:`"
                    + hint(placement, defaults),
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
    yield from _segments_tested(rulesets, known=set(defined) | _segments_set(rulesets))


def _segments_set(rulesets: list[LoadedRuleset]) -> set[str]:
    """The segments rules add customers to or remove them from."""
    return {
        name
        for r in rulesets
        for rule in r.definition.rules
        for action in rule.actions
        for spec in [getattr(action, "segment", None)]
        if spec is not None
        for name in (spec.add, spec.remove)
        if name
    }


def _segments_tested(rulesets: list[LoadedRuleset], *, known: set[str]) -> Iterator[RuleError]:
    """A rule tests segments that have members: defined by a segment file or set by a
    rule (a misspelt one would never hold)."""
    for item in rulesets:
        for i, rule in enumerate(item.definition.rules):
            for path, name in validate.segments_tested(rule):
                if name not in known:
                    message = (
                        f"rule {rule.id}: no segment {name!r} is defined in {SEGMENTS_DIR}/ "
                        f"or set by a rule{hint(name, known)}"
                    )
                    yield RuleError(item.file, _line(item, ("rules", i, *path)), message)


def _experiments_across(
    rulesets: list[LoadedRuleset], segments: list[LoadedSegment]
) -> Iterator[RuleError]:
    """Experiment keys are unique; a placement target has a default somewhere; a
    targeted segment is computed from a segment file or set by a rule."""
    placements = {name for r in rulesets for name in r.definition.placements}
    known = {s.name for s in segments} | _segments_set(rulesets)
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
                    item.file,
                    line,
                    f"experiment {spec.key}: no placement {placement!r} is defined"
                    + hint(placement, placements),
                )
            if spec.segment is not None and spec.segment not in known:
                yield RuleError(
                    item.file,
                    line,
                    f"experiment {spec.key}: segment {spec.segment!r} is neither defined in "
                    f"{SEGMENTS_DIR}/ nor set by a rule{hint(spec.segment, known)}",
                )


def _errors(
    item: LoadedRuleset, problems: Iterable[tuple[tuple[str | int, ...], str]]
) -> list[RuleError]:
    return [RuleError(item.file, _line(item, path), message) for path, message in problems]


def _rule_line(item: LoadedRuleset, rule_id: str) -> int | None:
    index = next(i for i, r in enumerate(item.definition.rules) if r.id == rule_id)
    return _line(item, ("rules", index, "id"))


def _line(item: LoadedRuleset, path: tuple[str | int, ...]) -> int | None:
    node = yaml.compose(item.source, Loader=yaml.SafeLoader)
    assert node is not None  # it was loaded from this text
    return parse.line(node, path)
