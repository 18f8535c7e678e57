"""Read a YAML file into a schema model, or errors that name the file and line.

The text is checked as plain data in bounds (`yamlcheck`) before anything is built from
it, duplicate keys are refused, and each validation error points at the line of the
key or item it is about.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.reader import ReaderError

from service.language import yamlcheck
from service.language.schema import OPERATORS

M = TypeVar("M", bound=BaseModel)
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


def parse_model(file: str, source: str, model: type[M]) -> tuple[yaml.Node, M]:
    """Any YAML file read as rule files are (plain data only, duplicate keys refused)
    and validated against `model`; RulesInvalid naming the file and line of each error."""
    node = _compose(file, source)
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


def _compose(file: str, source: str) -> yaml.Node:
    """The text's YAML nodes, once it is known to be plain data in bounds."""
    try:
        problems = yamlcheck.problems(source)
        if problems:
            raise RulesInvalid([RuleError(file, line, message) for line, message in problems])
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise RulesInvalid([_yaml_error(file, source, exc)]) from None
    if node is None:
        raise RulesInvalid([RuleError(file, None, "the file is empty")])
    return node


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


def line(root: yaml.Node, path: tuple[Any, ...]) -> int:
    """The line of the deepest node along `path` (keys and indexes) from `root`."""
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
        child = _child(node, key)
        if child is not None:
            node = child
            walked.append(str(key))
    return node.start_mark.line + 1, ".".join(walked)


def _child(node: yaml.Node, key: Any) -> yaml.Node | None:
    """The value of `key` in a mapping, or item `key` of a sequence; None if absent."""
    if isinstance(node, yaml.MappingNode):
        return next((value for k, value in node.value if k.value == key), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        item: yaml.Node = node.value[key]
        return item
    return None


def _validation_errors(file: str, root: yaml.Node, exc: ValidationError) -> list[RuleError]:
    found: dict[tuple[int, str], RuleError] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        at, where = _locate(root, loc)
        message = _validation_message(error, loc)
        text = f"{where}: {message}" if where else message
        found.setdefault((at, text), RuleError(file, at, text))
    return list(found.values())


def _validation_message(error: Any, loc: tuple[Any, ...]) -> str:
    """Pydantic's message for one error, in the words of the file's format."""
    if error["type"] == "extra_forbidden":
        parent = loc[-2] if len(loc) > 1 else ""
        if isinstance(parent, str) and parent.startswith(("event.", "context.", "profile.")):
            return f"unknown operator {loc[-1]!r}; use one of: {', '.join(OPERATORS)}"
        return f"unknown field {loc[-1]!r}"
    if error["type"] == "missing" and loc:
        return f"{loc[-1]!r} is required here"  # the key is not in the file to point at
    if error["type"] == "string_pattern_mismatch" and loc and loc[-1] == "[key]":
        return f"{error['input']!r} is not a fact (use event.…, context.… or profile.…)"
    return str(error["msg"]).removeprefix("Value error, ")
