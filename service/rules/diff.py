"""What would change between the live rule and segment files and a set on disk: files
added, removed or changed, and in a changed file the rules, placements and experiments
added, removed or changed, with the fields that changed. Pure: it compares loaded
files, so `rules diff`, `rules publish` and the deployment's record say the same.

Rulesets are matched by their `ruleset:` name and segments by their `segment:` name,
so a file renamed without other change is a changed file (`file`), not a removal and an
addition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.language.loader import LoadedRuleset, LoadedSegment

Loaded = LoadedRuleset | LoadedSegment

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
# Rule files' fields compared as a whole (rules, placements, experiments: one by one).
RULESET_FIELDS = ("version", "description", "events", "traits", "tests")
SEGMENT_FIELDS = ("version", "description", "events", "traits", "when", "tests")


@dataclass(frozen=True)
class FieldChange:
    """One field that differs. Its values are shown when they are single and short (a
    priority, a delay, a version), not for lists, mappings (conditions, actions) and
    long texts (descriptions)."""

    name: str
    before: Any = None
    after: Any = None

    @property
    def shown(self) -> bool:
        """Whether the values are worth showing (single values that differ)."""
        return self.before != self.after and _single(self.before) and _single(self.after)

    def __str__(self) -> str:
        return (
            f"{self.name} {_show(self.before)} → {_show(self.after)}" if self.shown else self.name
        )


@dataclass(frozen=True)
class ItemChange:
    """A rule, placement or experiment of a ruleset added, removed or changed."""

    kind: str  # rule | placement | experiment
    name: str
    change: str  # added | removed | changed
    fields: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class FileChange:
    kind: str  # ruleset | segment
    name: str
    change: str  # added | removed | changed
    file: str  # on disk; the live file's name when it was removed
    fields: tuple[FieldChange, ...] = ()
    items: tuple[ItemChange, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "change": self.change,
            "file": self.file,
            "fields": [_field_dict(f) for f in self.fields],
            "items": [
                {
                    "kind": i.kind,
                    "name": i.name,
                    "change": i.change,
                    "fields": [_field_dict(f) for f in i.fields],
                }
                for i in self.items
            ],
        }


def diff(live: Iterable[Loaded], draft: Iterable[Loaded]) -> list[FileChange]:
    """The changes that activating `draft` in place of `live` makes, rulesets first,
    then segments, each by name. Identical files are left out."""
    before, after = _keyed(live), _keyed(draft)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            changes.append(_whole(new, ADDED))
        elif new is None and old is not None:
            changes.append(_whole(old, REMOVED))
        elif old is not None and new is not None and _differ(old, new):
            changes.append(_changed(old, new))
    return changes


def summary(changes: Sequence[FileChange]) -> str:
    """One line: how many files and rules are added, removed and changed."""
    if not changes:
        return "no changes: the files are what is live"
    files = {c: sum(1 for x in changes if x.change == c) for c in (ADDED, REMOVED, CHANGED)}
    rules = {
        c: sum(1 for x in changes for i in x.items if i.kind == "rule" and i.change == c)
        for c in (ADDED, REMOVED, CHANGED)
    }
    return (
        f"files: {files[ADDED]} added, {files[REMOVED]} removed, {files[CHANGED]} changed; "
        f"rules: {rules[ADDED]} added, {rules[REMOVED]} removed, {rules[CHANGED]} changed"
    )


def lines(changes: Sequence[FileChange]) -> list[str]:
    """The changes as the CLI prints them."""
    out = []
    for change in changes:
        head = f"{change.kind} {change.name} ({change.file}): {change.change}"
        out.append(head + (f": {', '.join(map(str, change.fields))}" if change.fields else ""))
        for item in change.items:
            fields = f": {', '.join(map(str, item.fields))}" if item.fields else ""
            out.append(f"  {item.kind} {item.name}: {item.change}{fields}")
    return out


# --- comparing ------------------------------------------------------------------------------


def _keyed(files: Iterable[Loaded]) -> dict[tuple[str, str], Loaded]:
    return {(_kind(item), item.name): item for item in files}


def _differ(old: Loaded, new: Loaded) -> bool:
    return old.content_hash != new.content_hash or old.file != new.file


def _kind(item: Loaded) -> str:
    return "ruleset" if isinstance(item, LoadedRuleset) else "segment"


def _whole(item: Loaded, change: str) -> FileChange:
    """A file added or removed, with its rules (each added or removed with it)."""
    items: tuple[ItemChange, ...] = ()
    if isinstance(item, LoadedRuleset):
        items = tuple(ItemChange("rule", r.id, change) for r in item.definition.rules)
    return FileChange(_kind(item), item.name, change, item.file, (), items)


def _changed(old: Loaded, new: Loaded) -> FileChange:
    names = RULESET_FIELDS if isinstance(new, LoadedRuleset) else SEGMENT_FIELDS
    a, b = _dump(old.definition), _dump(new.definition)
    fields = list(_fields(a, b, names=names))
    if old.file != new.file:
        fields.insert(0, FieldChange("file", old.file, new.file))
    items: list[ItemChange] = []
    if isinstance(old, LoadedRuleset) and isinstance(new, LoadedRuleset):
        experiments = _items(
            "experiment", _by(a["experiments"], "key"), _by(b["experiments"], "key")
        )
        items += _rules(old, new, a, b, experiments)
        items += _items("placement", a["placements"], b["placements"])
        items += experiments
    return FileChange(_kind(new), new.name, CHANGED, new.file, tuple(fields), tuple(items))


def _rules(
    old: LoadedRuleset,
    new: LoadedRuleset,
    a: dict[str, Any],
    b: dict[str, Any],
    experiments: list[ItemChange],
) -> list[ItemChange]:
    """Rules added, removed or changed; a rule whose experiment (one targeting it or
    its ruleset) was added, removed or changed has `experiments` among its fields."""
    changed = {i.name for i in experiments}
    specs = {s["key"]: s for s in [*a["experiments"], *b["experiments"]]}
    items = _items("rule", _by(a["rules"], "id"), _by(b["rules"], "id"))
    by_rule = {i.name: i for i in items}
    for rule in new.definition.rules:
        targeted = [
            key
            for key in changed
            if specs[key]["target"].get("rule") == rule.id
            or specs[key]["target"].get("ruleset") == new.name
        ]
        item = by_rule.get(rule.id)
        if not targeted or (item is not None and item.change == ADDED):
            continue
        extra = FieldChange(f"experiments ({', '.join(sorted(targeted))})")
        by_rule[rule.id] = ItemChange(
            "rule", rule.id, CHANGED, (item.fields if item else ()) + (extra,)
        )
    order = [r.id for r in old.definition.rules] + [r.id for r in new.definition.rules]
    return [by_rule[i] for i in dict.fromkeys(order) if i in by_rule]


def _items(kind: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[ItemChange]:
    items = []
    for name in [*before, *(n for n in after if n not in before)]:
        if name not in after:
            items.append(ItemChange(kind, name, REMOVED))
        elif name not in before:
            items.append(ItemChange(kind, name, ADDED))
        elif before[name] != after[name]:
            items.append(ItemChange(kind, name, CHANGED, _fields(before[name], after[name])))
    return items


MOST_LEAVES = 3  # a field with more values changed is named, not detailed


def _fields(
    before: Any, after: Any, *, names: Iterable[str] | None = None
) -> tuple[FieldChange, ...]:
    """The fields that differ (all of them, or `names`), each down to the values that
    changed inside it when they are few and single (`when.1.absent.within 24h → 12h`)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return (FieldChange("value", before, after),)
    found: list[FieldChange] = []
    for name in names or [*before, *(n for n in after if n not in before)]:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        leaves = list(_leaves(old, new, name))
        if len(leaves) <= MOST_LEAVES and all(leaf.shown for leaf in leaves):
            found += leaves
        else:
            found.append(FieldChange(name, old, new))
    return tuple(found)


def _leaves(before: Any, after: Any, path: str) -> Iterable[FieldChange]:
    """Where two values differ: into mappings and into lists of the same length."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            if before.get(key) != after.get(key):
                yield from _leaves(before.get(key), after.get(key), f"{path}.{key}")
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (old, new) in enumerate(zip(before, after, strict=True)):
            if old != new:
                yield from _leaves(old, new, f"{path}.{i}")
    else:
        yield FieldChange(path, before, after)


def _by(values: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {value[key]: value for value in values}


def _dump(definition: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


SHORT = 40  # longer texts (descriptions) are named, not shown


def _single(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= SHORT
    return value is None or isinstance(value, int | float | bool)


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


def _field_dict(change: FieldChange) -> dict[str, Any]:
    if change.shown:
        return {"name": change.name, "before": change.before, "after": change.after}
    return {"name": change.name}
