"""What a rule file's YAML may hold: plain data, in bounds.

YAML can say more than rule files need, and some of it crashes or stalls whoever
reads it: tags that build objects (`!!python/object…`, any `!tag`), binary, aliases
that expand a few lines into billions of nodes, nesting deeper than the parser's
recursion, integers no column or engine holds, non-finite numbers, keys that are
lists. `problems` reads the file's events once (the event parser does not recurse)
and says where each of these is, before anything is built from the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import yaml

MAX_DEPTH = 50  # lists and mappings inside one another
MAX_NODES = 100_000  # values in the document once every alias is expanded
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_MAX_INT_CHARS = 32  # longer integer text is out of range whatever it says

_CORE = "tag:yaml.org,2002:"
# Explicit tags that only say what a plain value is anyway.
ALLOWED_TAGS = frozenset(
    {"!"} | {_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
)


@dataclass
class _Collection:
    anchor: str | None
    mapping: bool
    start: int  # the node count when it opened (itself included)
    children: int = 0


@dataclass
class _State:
    nodes: int = 0
    aliased: bool = False
    open: list[_Collection] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # anchor → expanded node count
    collections: set[str] = field(default_factory=set)  # anchors of lists and mappings


def problems(source: str) -> list[tuple[int, str]]:
    """(line, message) for the first problem found; [] when the file is plain data.
    yaml.YAMLError when it is not YAML at all (the caller reports it with its line)."""
    state = _State()
    resolver = yaml.SafeLoader("")
    for event in yaml.parse(source, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark else 1
        problem = _check(event, state, resolver)
        if problem:
            return [(line, problem)]
        if state.nodes > MAX_NODES:
            why = " (through aliases)" if state.aliased else ""
            return [(line, f"the file expands to more than {MAX_NODES} values{why}")]
    return []


def _check(event: yaml.Event, state: _State, resolver: yaml.SafeLoader) -> str | None:
    if isinstance(event, yaml.CollectionEndEvent):
        closed = state.open.pop()
        if closed.anchor is not None:
            state.sizes[closed.anchor] = state.nodes - closed.start + 1
        return None
    if not isinstance(event, yaml.NodeEvent):
        return None  # stream and document boundaries
    parent = state.open[-1] if state.open else None
    is_key = parent is not None and parent.mapping and parent.children % 2 == 0
    if parent is not None:
        parent.children += 1
    if isinstance(event, yaml.AliasEvent):
        return _alias(event, state, is_key=is_key)
    tag = getattr(event, "tag", None)
    if tag is not None and tag not in ALLOWED_TAGS:
        shown = "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
        return f"the tag {shown} is not allowed: rule files hold text, numbers, lists and mappings"
    state.nodes += 1
    if isinstance(event, yaml.ScalarEvent):
        if event.anchor is not None:
            state.sizes[event.anchor] = 1
            state.collections.discard(event.anchor)
        return _scalar(event, resolver)
    if is_key:
        return "a key must be plain text, not a list or a mapping"
    if len(state.open) >= MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    anchor = event.anchor
    state.open.append(_Collection(anchor, isinstance(event, yaml.MappingStartEvent), state.nodes))
    if anchor is not None:
        state.collections.add(anchor)
    return None


def _alias(event: yaml.AliasEvent, state: _State, *, is_key: bool) -> str | None:
    anchor = event.anchor
    if any(c.anchor == anchor for c in state.open):
        return f"the alias *{anchor} is inside the value it refers to (a loop)"
    if anchor not in state.sizes:
        return f"the alias *{anchor} refers to no anchor &{anchor} before it"
    if is_key and anchor in state.collections:
        return "a key must be plain text, not a list or a mapping"
    state.aliased = True
    state.nodes += state.sizes[anchor]
    return None


def _scalar(event: yaml.ScalarEvent, resolver: yaml.SafeLoader) -> str | None:
    tag = event.tag
    if tag is None or tag == "!":
        if not event.implicit[0]:
            return None  # quoted or `!`: a string
        tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
    value = event.value
    if tag == _CORE + "int":
        if len(value) > _MAX_INT_CHARS:
            return f"the integer {value[:20]}… is out of range ({INT_MIN} to {INT_MAX})"
        try:
            number = resolver.construct_yaml_int(yaml.ScalarNode(tag, value))
        except ValueError:
            return f"{value!r} is not an integer"
        if not INT_MIN <= number <= INT_MAX:
            return f"the integer {value} is out of range ({INT_MIN} to {INT_MAX})"
    elif tag == _CORE + "float":
        try:
            real = resolver.construct_yaml_float(yaml.ScalarNode(tag, value))
        except ValueError:
            return f"{value!r} is not a number"
        if not math.isfinite(real):
            return f"{value} is not a finite number"
    elif tag == _CORE + "timestamp":
        try:
            resolver.construct_yaml_timestamp(yaml.ScalarNode(tag, value))
        except ValueError as exc:
            return f"{value} is not a date or time: {exc}"
    return None
